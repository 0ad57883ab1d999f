"""cpi_theory.paper."""
