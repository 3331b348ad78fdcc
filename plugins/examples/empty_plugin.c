/* empty_plugin.c — the smallest possible plugin: takes part in end of data and does
 * nothing. Used by bench/bench_plugins.sh to measure the per-message cost of the plugin
 * machinery itself. */
#include "plugin.h"

#include <stddef.h>

static int empty_init(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
    void **instance, char *err, size_t errlen)
{
	*instance = (void *)host;
	return 0;
}

static void empty_on_eom(void *instance, struct mxgate_call *c)
{
	const struct mxgate_host *host = instance;

	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

const struct mxgate_plugin mxgate_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.desc_size = MXGATE_DESC_SIZE,
	.name = "empty",
	.init = empty_init,
	.on_eom = empty_on_eom,
};
