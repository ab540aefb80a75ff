"""Support shared by the tests and the benchmarks: real processes on loopback, data, images."""
