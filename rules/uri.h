/* uri.h — URLs as uri rules see them: found in plain text (scheme://..., www.host...,
 * user@host as mailto:) and in HTML link attributes; trimmed of trailing punctuation and
 * given a scheme when missing, as SpamAssassin's uri list does. No I/O. */
#ifndef MX_URI_H
#define MX_URI_H

#include <stddef.h>

struct uri_list { char **v; size_t n, cap; size_t max; };

/* Finds URLs in text and appends them (deduplicated, at most l->max when set, else 1000). */
void uri_extract_text(struct uri_list *l, const char *text, size_t len);
/* Appends one link target from HTML (href/src), normalised. */
void uri_add(struct uri_list *l, const char *uri, size_t len);
void uri_list_free(struct uri_list *l);

#endif
