// The library's export, apart from the class so that the unit tests link the class alone.
#include "notes.hpp"

HERD_PLUGIN(notes::Notes)
