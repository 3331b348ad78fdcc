/* mxgatectl.c — the control client: sends one command to mxgate's control socket and
 * prints the answer (proxy/control.h lists the commands, proxy/control_proto.h the wire
 * format).
 *
 *   mxgatectl [-c FILE | -s PATH] [--json] [-t SECONDS] COMMAND [ARG...]   (options anywhere)
 *
 * Exit status: 0 the command succeeded, 1 it failed (the daemon's reason on stderr) or the
 * command line is wrong, 2 the daemon cannot be reached (no socket, refused, timeout, a
 * garbled reply). With --json every outcome is one JSON object on stdout: the daemon's
 * answer, or on a failure {"ok":false,"error":"..."} (a JSON answer of the daemon's to a
 * failed command gets "ok":false first), with the same exit status; stderr stays empty. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proxy/cfg.h"
#include "proxy/control_config.h"
#include "proxy/control_proto.h"
#include "proxy/jsonw.h"

#define DEFAULT_SOCKET "/run/mxgate/control.sock"

enum { EXIT_OK = 0, EXIT_COMMAND = 1, EXIT_UNREACHABLE = 2 };

static bool json_out;   /* --json: failures too are a JSON object on stdout */

/* Prints a failure: "mxgatectl: TEXT" on stderr (prefix false: TEXT alone), or with --json
 * {"ok":false,"error":"TEXT"} on stdout (TEXT without its trailing newlines). */
static void ctl_fail_text(bool prefix, const char *text, size_t len)
{
	struct strbuf b = { 0 };
	struct jsonw j;

	if (!json_out) {
		fprintf(stderr, "%s%.*s\n", prefix ? "mxgatectl: " : "", (int)len, text);
		return;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	jsonw_init(&j, &b);
	jsonw_obj(&j, NULL);
	jsonw_bool(&j, "ok", false);
	jsonw_strn(&j, "error", text, len);
	jsonw_end(&j);
	fprintf(stdout, "%.*s\n", (int)b.len, b.v ? b.v : "");
	strbuf_free(&b);
}

/* ctl_fail_text with a printf format, the "mxgatectl: " prefix in plain mode. */
static void ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ctl_fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctl_fail_text(true, msg, strlen(msg));
}

/* The daemon's answer to a failed command: plain, as it is on stderr; with --json its JSON
 * object with "ok":false first, or its text as {"ok":false,"error":...}. */
static void ctl_print_refusal(const char *p, size_t n)
{
	size_t b = 0, e = n;

	if (!json_out) {
		fwrite(p, 1, n, stderr);
		return;
	}
	while (b < e && (p[b] == ' ' || p[b] == '\n' || p[b] == '\r' || p[b] == '\t'))
		b++;
	while (e > b && (p[e - 1] == ' ' || p[e - 1] == '\n' || p[e - 1] == '\r' || p[e - 1] == '\t'))
		e--;
	if (e - b >= 2 && p[b] == '{' && p[e - 1] == '}') {
		bool empty = e - b == 2;

		fprintf(stdout, "{\"ok\":false%s%.*s\n", empty ? "" : ",", (int)(e - b - 1), p + b + 1);
		return;
	}
	ctl_fail_text(false, p + b, e - b);
}

/* Whether an argument asks for --json as getopt_long reads it: "--json" or an unambiguous
 * prefix of it ("--j"), or a group of short options with j before any option taking a value
 * ("-xj", "-jx"; in "-cj" the j is -c's FILE). */
static bool ctl_arg_is_json(const char *a)
{
	size_t n = strlen(a);

	if (a[0] != '-' || n < 2)
		return false;
	if (a[1] == '-')
		return n >= 3 && strncmp(a, "--json", n) == 0;
	for (const char *p = a + 1; *p; p++) {
		if (*p == 'j')
			return true;
		if (strchr("cst", *p))
			return false;
	}
	return false;
}

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: mxgatectl [-c FILE | -s PATH] [--json] [-t SECONDS] COMMAND [ARG...]\n"
	    "  -c, --config FILE    take the socket path from FILE's control.socket\n"
	    "  -s, --socket PATH    the control socket (default " DEFAULT_SOCKET ")\n"
	    "  -j, --json           JSON output, for scripts\n"
	    "  -t, --timeout SECS   give up after SECS seconds (default 30)\n"
	    "commands:\n"
	    "  status                          version, uptime, generation, sessions, msg/s, backends\n"
	    "  backends                        backends with state and latency\n"
	    "  drain BACKEND | enable BACKEND  stop/resume new transactions to BACKEND (URL or host:port)\n"
	    "  reload                          re-read the config; prints the generation or the errors\n"
	    "  flush dns|passcache|reputation IP\n"
	    "  passcache                       the pass caches: entries, store, this process's hits\n"
	    "  top clients|reasons|rules|senders|recipients|domains [N]\n"
	    "  learn spam|ham FILE             teach the classifier (FILE '-' = standard input)\n"
	    "  ratelimit show|reset KEY VALUE  a client's (sender's ...) rate-limit buckets; reset empties them\n"
	    "  greylist list [N]               greylist triplets, message records and clients with their state\n"
	    "  greylist show|pass|delete IP SENDER RCPT\n"
	    "  greylist allow|trap IP [TTL]    a client passes greylisting / is refused (a trap) until TTL\n"
	    "  greylist disallow|untrap IP     its allow / trap record goes\n"
	    "  quarantine list [N]             held messages, newest first: id date from rcpts size reason\n"
	    "  quarantine show ID              a held message's envelope and header\n"
	    "  quarantine release ID [RCPT...] deliver it through the backends (to RCPTs: only them)\n"
	    "  quarantine delete ID            remove it\n"
	    "  help                            the daemon's list of commands\n");
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for fd to be readable/writable until deadline. 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short ev, double deadline)
{
	for (;;) {
		double left = deadline - now_s();
		if (left <= 0)
			return 0;
		struct pollfd p = { .fd = fd, .events = ev };
		int r = poll(&p, 1, (int)(left * 1000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		return r < 0 ? -1 : r > 0;
	}
}

static int send_all(int fd, const char *p, size_t n, double deadline)
{
	while (n > 0) {
		if (wait_fd(fd, POLLOUT, deadline) != 1)
			return -1;
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads a file (or stdin for "-") into a malloc'd buffer of at most CTL_MAX_BODY bytes. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (f == NULL) {
		ctl_fail("%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > (size_t)CTL_MAX_BODY + 1)
				cap = (size_t)CTL_MAX_BODY + 1;
			char *nb = realloc(buf, cap);
			if (nb == NULL)
				break;
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0 || n > CTL_MAX_BODY)
			break;
	}
	if (ferror(f)) {          /* a directory, an I/O error: not an empty message */
		ctl_fail("%s: %s", path, strerror(errno));
		if (f != stdin)
			fclose(f);
		free(buf);
		return NULL;
	}
	if (f != stdin)
		fclose(f);
	if (n > CTL_MAX_BODY) {
		ctl_fail("%s: larger than %u bytes", path, CTL_MAX_BODY);
		free(buf);
		return NULL;
	}
	*len = n;
	return buf ? buf : calloc(1, 1);
}

/* Only the control section of the daemon's file: the rest (TLS key, rule files, lists) is
 * the daemon's to read and check, and an operator allowed on the socket may not be allowed
 * to read those. */
struct ctl_file { struct control_config control; };
static const struct cfg_field ctl_file_fields[] = {
	{ "control", CFG_STRUCT, offsetof(struct ctl_file, control), NULL,
	  .sub = &control_config_table, .doc = "the control socket" },
	{ NULL }
};
static const struct cfg_table ctl_file_table = {
	"mxgatectl", sizeof(struct ctl_file), ctl_file_fields, NULL, CFG_TABLE_OTHER_KEYS
};

/* The socket path from FILE's control section. NULL after printing why. */
static char *socket_from_config(const char *path)
{
	struct ctl_file f = { 0 };
	char *s = NULL, *errs = NULL;
	size_t errs_len = 0;
	FILE *ef = json_out ? open_memstream(&errs, &errs_len) : stderr;
	int rc = cfg_table_load(path, NULL, 0, &ctl_file_table, &f, ef ? ef : stderr);

	if (ef != NULL && ef != stderr) {
		fclose(ef);
		if (rc != 0)
			ctl_fail_text(false, errs ? errs : "", errs_len);
		free(errs);
	}
	if (rc != 0)
		goto out;
	if (f.control.socket == NULL) {
		ctl_fail("%s: no control.socket configured", path);
		goto out;
	}
	s = strdup(f.control.socket);
out:
	cfg_table_free(&ctl_file_table, &f);
	return s;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *sockpath = NULL, *cfgpath = NULL;
	char *owned = NULL, *body = NULL;
	size_t body_len = 0;
	bool json = false, has_body = false;
	double timeout = 30;
	int ch;

	/* Options may come before or after the command (GNU getopt permutes): `mxgatectl status
	 * --json` as well as `mxgatectl --json status`; "--" ends them. --json is looked for
	 * first: an error in an option before it is JSON too. */
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (ctl_arg_is_json(argv[i]))
			json_out = true;
	opterr = !json_out;            /* getopt's own complaint would go to stderr */
	while ((ch = getopt_long(argc, argv, "c:s:jt:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': cfgpath = optarg; break;
		case 's': sockpath = optarg; break;
		case 'j': json = json_out = true; break;
		case 't':
			timeout = strtod(optarg, NULL);
			if (timeout <= 0) {
				ctl_fail("bad timeout: %s", optarg);
				return EXIT_COMMAND;
			}
			break;
		case 'h': usage(stdout); return EXIT_OK;
		default:
			if (json_out && optopt != 0)     /* a short option, perhaps in a group */
				ctl_fail("bad option or a missing value: -%c (mxgatectl --help lists them)",
				    optopt);
			else if (json_out)
				ctl_fail("bad option or a missing value: %s (mxgatectl --help lists them)",
				    argv[optind - 1]);
			else
				usage(stderr);
			return EXIT_COMMAND;
		}
	}
	if (optind >= argc) {
		if (json_out)
			ctl_fail("no command (mxgatectl --help lists them)");
		else
			usage(stderr);
		return EXIT_COMMAND;
	}
	/* The line: the words, with learn's FILE replaced by the body it names. */
	char line[CTL_MAX_LINE];
	size_t ll = 0;
	int nwords = argc - optind;
	if (strcmp(argv[optind], "learn") == 0) {
		if (nwords != 3) {
			ctl_fail_text(false, "usage: mxgatectl learn spam|ham FILE", 36);
			return EXIT_COMMAND;
		}
		if ((body = read_file(argv[optind + 2], &body_len)) == NULL)
			return EXIT_COMMAND;
		has_body = true;
		nwords = 2;
	}
	if (nwords > CTL_MAX_ARGS) {
		ctl_fail("too many words");
		return EXIT_COMMAND;
	}
	for (int i = 0; i < nwords; i++) {
		const char *w = argv[optind + i];
		for (const char *c = w; *c; c++)
			if (*c <= ' ' || *c > '~' || (c == w && c[0] == '-' && c[1] == '-')) {
				ctl_fail("\"%s\": words are printable ASCII without blanks and do not start with --", w);
				return EXIT_COMMAND;
			}
		int n = snprintf(line + ll, sizeof(line) - ll, "%s%s", i ? " " : "", w);
		if (n < 0 || (size_t)n >= sizeof(line) - ll - 40) {
			ctl_fail("command too long");
			return EXIT_COMMAND;
		}
		ll += (size_t)n;
	}
	ll += (size_t)snprintf(line + ll, sizeof(line) - ll, "%s", json ? " --json" : "");
	if (has_body)
		ll += (size_t)snprintf(line + ll, sizeof(line) - ll, " --length=%zu", body_len);
	line[ll++] = '\n';

	if (sockpath == NULL && cfgpath) {
		if ((owned = socket_from_config(cfgpath)) == NULL)
			return EXIT_UNREACHABLE;
		sockpath = owned;
	}
	if (sockpath == NULL)
		sockpath = getenv("MXGATE_CONTROL_SOCKET") ? getenv("MXGATE_CONTROL_SOCKET") : DEFAULT_SOCKET;

	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(sockpath) >= sizeof(sun.sun_path)) {
		ctl_fail("socket path too long: %s", sockpath);
		return EXIT_UNREACHABLE;
	}
	strcpy(sun.sun_path, sockpath);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		ctl_fail("cannot connect to %s: %s", sockpath, strerror(errno));
		return EXIT_UNREACHABLE;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	double deadline = now_s() + timeout;
	/* A daemon that refuses the connection (the 17th: "too many control connections")
	 * answers and closes, maybe before the request is sent: that answer is read and printed,
	 * not "Broken pipe". */
	int send_err = 0;
	if (send_all(fd, line, ll, deadline) != 0 || (has_body && send_all(fd, body, body_len, deadline) != 0)) {
		send_err = errno;
		if (send_err != EPIPE && send_err != ECONNRESET) {
			ctl_fail("%s: sending failed: %s", sockpath, send_err ? strerror(send_err) : "timeout");
			return EXIT_UNREACHABLE;
		}
	}
	/* EPIPE, ECONNRESET: the daemon answered and closed before it read the request (no file
	 * descriptor left for this connection: an ERR line); its answer is read below. */
	free(body);
	shutdown(fd, SHUT_WR);

	/* The reply: head, then exactly the announced payload. */
	char *buf = NULL;
	size_t n = 0, cap = 0, plen = 0, hlen = 0;
	bool ok = false;
	int head = 0;
	for (;;) {
		if (head == 1 && n >= hlen + plen)
			break;
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				ctl_fail("out of memory");
				goto unreachable;
			}
			buf = nb;
		}
		int w = wait_fd(fd, POLLIN, deadline);
		if (w != 1) {
			if (strcmp(argv[optind], "reload") == 0)
				ctl_fail("%s: no answer within %.0f s (the reload goes on in the "
				    "daemon: its log says event=reloaded, event=reload_failed, or "
				    "event=reload_not_in_force when a worker held in a hook has not taken it "
				    "%g s after loading; -t waits longer)", sockpath, timeout,
				    CTL_RELOAD_WAIT_MS / 1000.0);
			else
				ctl_fail("%s: no answer within %.0f s", sockpath, timeout);
			goto unreachable;
		}
		ssize_t r = recv(fd, buf + n, cap - n, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0 && send_err && n == 0) {
			ctl_fail("%s: sending failed: %s", sockpath, strerror(send_err));
			goto unreachable;
		}
		if (r <= 0) {
			ctl_fail("%s: connection closed before the answer was complete", sockpath);
			goto unreachable;
		}
		n += (size_t)r;
		if (head == 0) {
			head = ctl_reply_parse_head(buf, n, &ok, &plen, &hlen);
			if (head < 0) {
				ctl_fail("%s: garbled answer", sockpath);
				goto unreachable;
			}
		}
	}
	close(fd);
	if (ok)
		fwrite(buf + hlen, 1, plen, stdout);
	else
		ctl_print_refusal(buf + hlen, plen);
	free(buf);
	free(owned);
	return ok ? EXIT_OK : EXIT_COMMAND;
unreachable:
	/* the reply's buffer and the socket path freed on the way out too (a sanitizer build
	 * reports them otherwise, and exits 1 instead of 2) */
	close(fd);
	free(buf);
	free(owned);
	return EXIT_UNREACHABLE;
}
