"""cpi_theory.reduced."""
