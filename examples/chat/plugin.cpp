// The library's export, apart from the class so that the unit tests link the class alone.
#include "chat.hpp"

HERD_PLUGIN(chat::Chat)
