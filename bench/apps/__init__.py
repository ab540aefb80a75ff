"""Small apps used only by the benchmark, to compare the product with alternatives."""
