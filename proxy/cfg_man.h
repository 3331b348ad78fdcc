/* cfg_man.h — mxgate.yaml(5), generated from the config tables (the same walk as
 * docs/config.md: cfg_docs_walk), so the manual and the reference cannot drift. */
#ifndef MX_CFG_MAN_H
#define MX_CFG_MAN_H

/* Writes the manual page in roff (man macros) to out (FILE *): `mxgate --dump-config-man`.
 * The output depends only on the tables and the version: the committed man/mxgate.yaml.5
 * must equal it (a test checks). */
void config_write_man(void *out);

#endif
