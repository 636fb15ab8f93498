# cmake -DLIBRARY=<path> -P cmake/remove_runpath.cmake: drops the RPATH/RUNPATH entry of a shared
# library. setup.py runs it on the Python package's copy of libmyconv: torch is always imported
# first, so every dependency resolves by soname, and no directory (of the build machine, or the
# current one through an empty entry) is ever searched.
if(NOT LIBRARY)
  message(FATAL_ERROR "usage: cmake -DLIBRARY=<shared library> -P remove_runpath.cmake")
endif()
file(RPATH_REMOVE FILE "${LIBRARY}")
