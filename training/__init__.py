"""Training (torch): the LUT activation, the mlp/convnet families, data sets, the trainer and activation plots."""
