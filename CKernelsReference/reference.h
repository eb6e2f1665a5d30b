// Helpers shared by the reference twins. Not part of the public API.
#ifndef CKERNELS_REFERENCE_INTERNAL_H
#define CKERNELS_REFERENCE_INTERNAL_H

#include "ckernels_reference.h"
#include <string.h>

#define CK_REQUIRE(condition, status) \
    do { if (!(condition)) return (status); } while (0)

#endif
