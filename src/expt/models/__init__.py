"""Architectures: builder functions `name(n_in, n_out, ...) -> nn.Module`."""
