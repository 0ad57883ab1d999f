"""Errors the package raises on bad input or failed runs.

Every user-facing error names the offending field and the rule it breaks; the CLI turns them into a
one-line message and exit code 2 (bad input) or 1 (a run that failed, e.g. diverged).
"""


class ConfigError(ValueError):
    """A configuration value breaks a rule. ``key`` is the offending field."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss. ``step`` is the first step whose loss is not finite."""

    def __init__(self, step: int, detail: str = ""):
        self.step = int(step)
        extra = f" ({detail})" if detail else ""
        super().__init__(f"training diverged: the loss is not finite at step {self.step}{extra}")


class PrecisionLossError(DivergenceError):
    """Float64 can no longer resolve what M_C depends on: at ``step`` the probe's logits and scores reached
    ``magnitude``, so rounding alone moves M_C's logit gap by about ``magnitude * 2.2e-16``."""

    def __init__(self, step: int, magnitude: float, detail: str = ""):
        self.step = int(step)
        self.magnitude = float(magnitude)
        extra = f"; {detail}" if detail else ""
        FloatingPointError.__init__(
            self,
            f"precision lost at step {self.step}: the probe's logits and attention scores reached magnitude "
            f"{self.magnitude:.3g} (|z_c*| + |z_a*| + sum sigma |u|), so float64 rounding moves M_C's logit gap "
            f"by ~{self.magnitude * 2.220446049250313e-16:.2g}, above the 1e-9 the results promise{extra}",
        )


class Float64Required(RuntimeError):
    """Theory code needs float64, but JAX runs in float32 (the default)."""

    def __init__(self):
        super().__init__(
            "cpi_theory's theory code runs in float64, but jax_enable_x64 is off. "
            "Call cpi_theory.enable_float64() (or set JAX_ENABLE_X64=1) before using JAX."
        )
