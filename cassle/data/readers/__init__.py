"""One module per on-disk dataset format; the registry that names them is :mod:`cassle.data.datasets`."""
