/* bad_abi_plugin.c — a plugin built for another ABI version; `mxgate -t` must refuse it.
 * Exists only for the tests. */
#include "plugin.h"

const struct mxgate_plugin mxgate_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION + 41,
	.name = "bad_abi",
};
