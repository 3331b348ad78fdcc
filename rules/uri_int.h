/* uri_int.h — what uri.c and uri_find.c share. Private to the URI code. */
#ifndef MX_URI_INT_H
#define MX_URI_INT_H

#include "uri.h"

#include <stdbool.h>
#include <stddef.h>

#define URI_MAX_LENGTH 8192          /* SA's MAX_URI_LENGTH */
#define URI_MAX_DETAILS 2000         /* raw URIs kept per message */

struct match_re;

struct uri_conf {
	char **tld; size_t ntld;             /* sorted, lower case */
	struct match_re *tbird;              /* PerMsgStatus::_tbirdurire */
	struct match_re *email, *email_strip; /* FreeMail's email_regex and strip pattern */
	struct match_re **redir; size_t nredir;
};

/* A growing NUL-terminated buffer (aborts when out of memory). */
struct uri_buf { char *p; size_t n, cap; };
void uri_buf_put(struct uri_buf *b, const char *s, size_t n);
void uri_buf_str(struct uri_buf *b, const char *s);
char *uri_strndup(const char *s, size_t n);
char *uri_strcat3(const char *a, const char *b, const char *c);
void uri_list_add(struct uri_list *l, const char *s);
bool uri_is_word(unsigned char c);
/* Is there a %XX escape in s? */
bool uri_has_pct(const char *s);
/* Util::url_encode in scalar context (which decodes most %XX escapes); malloc'd. */
char *uri_url_encode(const char *s);

#endif
