"""mobile-kernelnet: blind-SR kernel estimators (KernelNet, S2K) from paper to phone."""
__version__ = "0.1.0"


def estimate(image, sf: int = 2, model: str = "kernelnet", config: str | None = None, budget: int | None = None):
    """Kernel of an LR image; see :func:`mobile_kernelnet.estimation.estimate`."""
    from .estimation import estimate as _estimate
    return _estimate(image, sf=sf, model=model, config=config, budget=budget)


def estimate_kernel(image, sf: int = 2, model: str = "kernelnet", config: str | None = None,
                    budget: int | None = None, artifact=None):
    """Kernel, window and source; see :func:`mobile_kernelnet.estimation.estimate_kernel`."""
    from .estimation import estimate_kernel as _estimate_kernel
    return _estimate_kernel(image, sf=sf, model=model, config=config, budget=budget, artifact=artifact)
