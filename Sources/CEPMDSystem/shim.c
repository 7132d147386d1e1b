#include "CEPMDSystem.h"
