"""cpi_theory.config."""
