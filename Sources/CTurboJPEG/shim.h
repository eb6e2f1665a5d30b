// libturbojpeg from Debian's libturbojpeg0-dev (make deps installs it).
#include <turbojpeg.h>
