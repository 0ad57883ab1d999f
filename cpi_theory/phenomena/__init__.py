"""cpi_theory.phenomena."""
