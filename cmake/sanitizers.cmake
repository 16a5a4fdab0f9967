# KF_SANITIZE=address,undefined | thread, and KF_FUZZ=ON (coverage for libFuzzer plus ASan and
# UBSan) instrument every target of the build; the flags are set once here.
if(KF_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(KF_SANITIZE)
  add_compile_options(-fsanitize=${KF_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${KF_SANITIZE})
endif()
