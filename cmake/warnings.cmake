# Strict warnings, treated as errors, for our own code only (third-party headers are SYSTEM).
add_compile_options(
  -Wall -Wextra -Wpedantic -Werror
  -Wshadow -Wnon-virtual-dtor -Wimplicit-fallthrough -Wcast-qual
  -Wformat=2 -Wundef -Wunused -Wthread-safety
)
