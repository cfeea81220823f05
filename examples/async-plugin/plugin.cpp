// The library's export, apart from the class so that the unit tests link the class alone.
#include "inventory.hpp"

HERD_PLUGIN(inventory::Inventory)
