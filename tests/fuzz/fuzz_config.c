/* fuzz_config.c — random bytes as a YAML config through config_load_string(), and as text
 * through every value parser. Nothing may crash, leak or hang. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_libfyaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	/* the value parsers take C strings: feed the text up to its first NUL */
	uint64_t u;
	struct cfg_rate r;
	struct cfg_cidr c;
	struct cfg_backend_url url;
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *err;
	bool b;
	cfg_parse_size(text, &u);
	cfg_parse_duration(text, &u);
	cfg_parse_rate(text, &r);
	cfg_parse_bool(text, &b);
	if (cfg_parse_cidr(text, &c) == 0) {
		struct cfg_cidrlist l = { &c, 1 };
		cfg_cidrlist_match(&l, (struct sockaddr *)&ss);
	}
	cfg_parse_backend_url(text, &url, &err);
	if (cfg_parse_listen_address(text, &ss, &sl, &err) == 0) {
		struct cfg_cidrlist l = { &c, 0 };
		cfg_cidrlist_match(&l, (struct sockaddr *)&ss);
	}

	/* the whole engine, errors discarded */
	struct mx_config *cfg = NULL;
	if (!fuzz_libfyaml_known_crash(data, size) && config_load_string("fuzz.yaml", text, size, &cfg, NULL) == 0)
		config_free(cfg);
	free(text);
	return 0;
}
