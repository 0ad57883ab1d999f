"""Byte-stable figure data: each figure's ``xarray.Dataset`` is written as netCDF3, read back, and both the
figure and the numbers of ``INDEX.md`` are taken from what was read."""

import os


def save_dataset(dataset, path: str) -> str:
    """Write an ``xarray.Dataset`` as netCDF3 with the scipy engine (no timestamps: byte-deterministic)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    dataset.to_netcdf(path, engine="scipy", format="NETCDF3_64BIT")
    return path


def load_dataset(path: str):
    """Read a dataset written by :func:`save_dataset` fully into memory (the file is closed)."""
    import xarray as xr

    with xr.open_dataset(path, engine="scipy") as ds:
        return ds.load()


def write_figure_data(dataset, outdir: str, stem: str, plot) -> tuple:
    """Save ``dataset`` as ``outdir/stem.nc``, read it back, and draw ``plot(ds, outdir/stem)`` (PNG + PDF)
    from what was read, so that the figure and every number taken from the returned dataset come from the
    data file. Returns (the dataset read back, the files written relative to ``outdir``)."""
    save_dataset(dataset, os.path.join(outdir, f"{stem}.nc"))
    ds = load_dataset(os.path.join(outdir, f"{stem}.nc"))
    plot(ds, os.path.join(outdir, stem))
    return ds, [f"{stem}.nc", f"{stem}.png", f"{stem}.pdf"]
