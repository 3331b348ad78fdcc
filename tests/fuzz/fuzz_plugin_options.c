/* fuzz_plugin_options.c — the `options:` of a built-in plugin entry through the whole config
 * engine (typed option tables: sizes with units, durations, enums, bounds, unknown keys,
 * both spellings of a key at the entry and under options). The first byte picks the
 * built-in (clamd, milter, spamd, rspamd) and the form: the rest becomes the mapping under
 * `options:`, each line indented in block style, or the inside of `options: { ... }`.
 * Nothing may crash, leak or hang; errors are discarded. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_libfyaml.h"

static const char *const fpo_names[] = { "clamd", "milter", "spamd", "rspamd" };
static const char *const fpo_addrs[] = { "127.0.0.1:3310", "inet:127.0.0.1:8891",
	"127.0.0.1:783", "127.0.0.1:11333" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char head[256], *text, *p;
	struct mx_config *cfg = NULL;
	unsigned sel;
	int n;

	if (size < 1 || size > 8192 || fuzz_libfyaml_known_crash(data, size))
		return 0;
	sel = data[0];
	data++;
	size--;
	n = snprintf(head, sizeof(head),
	    "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"
	    "plugins:\n  - name: %s\n    address: \"%s\"\n    options:%s",
	    fpo_names[sel & 3], fpo_addrs[sel & 3], sel & 4 ? " { " : "\n      ");
	/* block style: every input line indented 6 (each LF adds 6 bytes) */
	text = malloc((size_t)n + size * 7 + 8);
	if (text == NULL)
		return 0;
	memcpy(text, head, (size_t)n);
	p = text + n;
	for (size_t i = 0; i < size; i++) {
		*p++ = (char)data[i];
		if (data[i] == '\n' && !(sel & 4)) {
			memcpy(p, "      ", 6);
			p += 6;
		}
	}
	if (sel & 4)
		*p++ = '}';
	*p++ = '\n';
	*p = '\0';
	if (config_load_string("fuzz.yaml", text, (size_t)(p - text), &cfg, NULL) == 0)
		config_free(cfg);
	free(text);
	return 0;
}
