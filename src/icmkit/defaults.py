"""The names the API, the command line and the benchmark default to. No imports: the command line reads them
while it parses arguments, before numpy, Pillow or torch are loaded (``icm --help`` stays quick)."""

DEFAULT_CODEC = "icm-mse"
DEFAULT_CLASSIFIER = "tf_efficientnet_lite0"
DEFAULT_BENCH_CODECS = "jpeg,webp,hevc444,avif,icm-mse,icm-mmd,icm-dicm-lite0"
