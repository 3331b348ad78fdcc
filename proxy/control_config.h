/* control_config.h — the `control:` config section (the control socket is control.h). */
#ifndef MX_CONTROL_CONFIG_H
#define MX_CONTROL_CONFIG_H

#include <stdint.h>

/* control: { socket, mode, owner, group, idle_timeout } */
struct control_config {
	char *socket;                /* path; NULL = no control socket */
	char *mode;                  /* octal permission bits, "0660" */
	char *owner;                 /* user name; NULL = the process's */
	char *group;                 /* group name; NULL = the owner's / the process's */
	uint64_t idle_timeout;       /* ms a connection may wait for its next request */
};

struct cfg_table;
extern const struct cfg_table control_config_table;

#endif
