"""cpi_theory.sweep."""
