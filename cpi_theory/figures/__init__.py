"""cpi_theory.figures."""
