/* fuzz_libfyaml.h — the libfyaml 0.7.12 crash the config fuzzers step around (like the leak
 * in lsan.supp): after an explicit key ('?'), a tab before a block indicator ('?', '-', ':')
 * makes fy_parse_cleanup dereference a bad pointer (SIGSEGV in fy_indent_vacuum_internal).
 * The daemon is protected: a config file is parsed in a child first (cfg_probe_yaml in
 * proxy/cfg_load.c). Inputs with that shape are skipped; docs/fuzzing.md. */
#ifndef MX_FUZZ_LIBFYAML_H
#define MX_FUZZ_LIBFYAML_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline int fuzz_libfyaml_known_crash(const uint8_t *data, size_t size)
{
	if (memchr(data, '?', size) == NULL)
		return 0;
	for (size_t i = 0; i < size; i++) {
		if (data[i] != '\t')
			continue;
		size_t j = i + 1;
		while (j < size && (data[j] == ' ' || data[j] == '\t'))
			j++;
		if (j < size && (data[j] == '?' || data[j] == '-' || data[j] == ':'))
			return 1;
	}
	return 0;
}

#endif
