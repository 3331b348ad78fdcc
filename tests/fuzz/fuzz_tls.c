/* fuzz_tls.c — whatever a peer sends, a tlsconn answers 0/1/-1 and never crashes, leaks
 * or reports a handshake it did not have.
 *
 * Byte 0 picks the side (bit 0: 0 = server receiving a ClientHello, 1 = client that sent
 * one) and the feed chunk size (bits 1-7); the rest is the peer's bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls.h"

static struct tls_ctx *server_ctx, *client_ctx;

static int sink_plain(void *arg, const char *d, size_t n) { (void)arg; (void)d; (void)n; return 0; }
static int sink_cipher(void *arg, const char *d, size_t n)
{
	size_t *total = arg;
	*total += n;
	return 0;
}
static const struct tlsconn_ops ops = { sink_plain, sink_cipher, NULL };

/* A throwaway self-signed EC certificate in a temp dir, loaded once. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/mx_fuzz_tls_XXXXXX", cert[64], key[64], err[256];
	(void)argc; (void)argv;
	if (!mkdtemp(dir))
		abort();
	snprintf(cert, sizeof cert, "%s/c.pem", dir);
	snprintf(key, sizeof key, "%s/k.pem", dir);
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)"fuzz.test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_sign(x, pk, EVP_sha256());
	FILE *f = fopen(cert, "w");
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(key, "w");
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
	server_ctx = tls_ctx_new_server(cert, key, NULL, NULL, 0, NULL, err, sizeof err);
	client_ctx = tls_ctx_new_client(err, sizeof err);
	unlink(cert);
	unlink(key);
	rmdir(dir);
	if (!server_ctx || !client_ctx)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t sent = 0;
	if (size < 1)
		return 0;
	bool client = data[0] & 1;
	size_t chunk = (size_t)(data[0] >> 1) * 37 + 1;
	data++;
	size--;
	/* At most ~64 feeds per input: keeps a 200000-run smoke test short. */
	if (chunk < size / 64 + 1)
		chunk = size / 64 + 1;

	struct tlsconn *t = tlsconn_new(client ? client_ctx : server_ctx, !client, "fuzz.test", &ops, &sent);
	if (!t)
		abort();
	if (client && tlsconn_start(t) != 0)
		abort();
	/* Written before any handshake: must stay buffered, not crash. */
	if (tlsconn_write(t, "220 hi\r\n", 8) != 0)
		abort();
	int last = 0;
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		char *copy = malloc(n);   /* exact size so ASan sees over-reads */
		memcpy(copy, data + off, n);
		int r = tlsconn_feed(t, copy, n);
		free(copy);
		if (r < -1 || r > 1)
			abort();
		if (last == -1 && r != -1)
			abort();   /* a failed connection stays failed */
		if (last == 1 && r != 1 && r != -1)
			abort();
		if (r == -1 && tlsconn_error(t)[0] == '\0')
			abort();
		last = r;
	}
	/* Random bytes cannot complete a handshake with our own key. */
	if (tlsconn_is_established(t) || tlsconn_version(t)[0] || tlsconn_cipher_bits(t))
		abort();
	tlsconn_shutdown(t);
	tlsconn_free(t);
	return 0;
}
