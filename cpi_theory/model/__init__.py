"""cpi_theory.model."""
