/* fuzz_store_records.c — records as a store hands them back, from a corrupt or foreign map
 * or a hostile Redis. The first 16 bytes are the clock and knobs, the rest is:
 *  - an LMDB value of a greylist triplet: decoded, decided, re-encoded (the encoding must
 *    decode to what was decided), swept;
 *  - an LMDB value of a reputation record (struct reputation_counts: doubles and a time
 *    from the disk, NaN and infinities included): an outcome added, decayed, scored;
 *  - RESP replies (hiredis's reader, as from the server) through the greylist reply parser
 *    and the reputation record parser (6 elements a record), then decayed and scored.
 * Nothing may crash, hang or be undefined behaviour (UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

#include "filters/greylist.h"
#include "filters/reputation.h"

/* RESP counts and lengths beyond these make hiredis allocate what the input announces (a
 * real server sends at most what mxgate's scripts return): not what is fuzzed here. */
static int fsr_resp_bounded(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t digits = 0;

		if (d[i] != '*' && d[i] != '$')
			continue;
		while (i + 1 + digits < n && d[i + 1 + digits] >= '0' && d[i + 1 + digits] <= '9')
			digits++;
		if (digits > 4)
			return 0;
	}
	return 1;
}

static uint64_t fsr_u64(const uint8_t *d)
{
	uint64_t v;

	memcpy(&v, d, sizeof(v));
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t now, delay, window, expire, wait_s, keep_ms;
	struct greylist_entry e;
	unsigned char rec[GREYLIST_RECORD_LEN];
	bool exists, pass;

	if (size < 16)
		return 0;
	now = fsr_u64(data);
	delay = data[8] * 1000ull;
	window = delay + 1000 + data[9] * 60000ull;
	expire = 1000 + data[10] * 86400000ull;
	data += 16;
	size -= 16;

	/* greylist: decode -> decide -> encode -> decode again */
	exists = greylist_record_decode(data, size, now, &e);
	pass = greylist_decide(&e, exists, now, delay, window, expire, &wait_s, &keep_ms);
	greylist_record_encode(&e, now + keep_ms, rec);
	if (now + keep_ms > now) {
		struct greylist_entry back;

		if (!greylist_record_decode(rec, sizeof(rec), now, &back) ||
		    back.first_ms != e.first_ms || back.passed != e.passed)
			abort();
	}
	(void)pass;
	greylist_record_expired(data, size, now);

	/* a client record's conditional delete (disallow|untrap, in the batch): deletes (0) or
	 * leaves (-1), never writes; with the mark, the state from the header's octet 11 */
	{
		uint64_t op[2] = { GREYLIST_IP_DEL_MARK, data[-5] % 4u };
		long n = greylist_ip_del_merge(data, size, op, sizeof(op), rec, sizeof(rec), now, NULL);

		if ((n != 0 && n != -1) || (size == 0 && n != -1))
			abort();
		if (size >= sizeof(op) &&
		    greylist_ip_del_merge(NULL, 0, data, sizeof(op), rec, sizeof(rec), now, NULL) != -1)
			abort();
	}

	/* a client record written where there is none (a worker's trap, in the batch): writes
	 * a record of the operand's state (read back so) or leaves (-1); any bytes as operand */
	{
		uint64_t op[4] = { GREYLIST_IP_NEW_MARK, data[-5] % 4u, now, now + 1 + data[-6] }, since, exp;
		long n = greylist_ip_new_merge(data, size, op, sizeof(op), rec, sizeof(rec), now, NULL);

		if (n != -1 && (n != GREYLIST_RECORD_LEN ||
		    greylist_ip_decode(rec, sizeof(rec), now, &since, &exp) != (int)op[1] ||
		    greylist_ip_decode(data, size, now, &since, &exp) != GREYLIST_IP_NONE))
			abort();
		if (size >= sizeof(op)) {
			n = greylist_ip_new_merge(NULL, 0, data, sizeof(op), rec, sizeof(rec), now, NULL);
			if (n != -1 && n != GREYLIST_RECORD_LEN)
				abort();
		}
	}

	/* the merges' guards, which the calls above always pass: the input as an operand of its own
	 * length, room for 0 to GREYLIST_RECORD_LEN octets from the header's octet 12; written
	 * exactly when the operand is one, live at now, and a record fits, else left (-1) */
	{
		size_t cap = data[-4] % (GREYLIST_RECORD_LEN + 1);
		uint64_t op[4];
		long want = -1;

		if (size == sizeof(op) && cap == GREYLIST_RECORD_LEN) {
			memcpy(op, data, sizeof(op));
			if (op[0] == GREYLIST_IP_NEW_MARK && op[3] > now &&
			    (op[1] == GREYLIST_IP_TRAPPED || op[1] == GREYLIST_IP_ALLOWED))
				want = GREYLIST_RECORD_LEN;
		}
		if (greylist_ip_new_merge(NULL, 0, data, size, rec, cap, now, NULL) != want)
			abort();
		/* the delete's operand of any length: over no record it never deletes */
		if (greylist_ip_del_merge(NULL, 0, data, size, rec, cap, now, NULL) != -1)
			abort();
	}

	/* a client network's passes (auto_allow_clients' LMDB record, "gla:"): the batch's merge
	 * of {expires_ms, add, logged} (from the header's octets 13-15) into the input as the
	 * stored record, and of the input as an operand of its own length into none; checked
	 * against the record's layout {expires_ms, count, 2 or 3 (logged)} */
	{
		uint64_t op[3] = { now - 500000 + data[-3] * 4000ull, data[-2] % 3u, data[-1] & 1u };
		size_t cap = data[-4] % (GREYLIST_RECORD_LEN + 1);

		for (int k = 0; k < 2; k++) {
			const void *cur = k == 0 ? data : NULL, *opp = k == 0 ? (const void *)op : data;
			size_t curlen = k == 0 ? size : 0, oplen = k == 0 ? sizeof(op) : size;
			uint64_t o[3], count, w[3];
			bool logged, live = greylist_awl_decode(cur, curlen, now, &count, &logged);
			long n = greylist_awl_merge(cur, curlen, opp, oplen, rec, cap, now, NULL);

			if (oplen != sizeof(o) || cap < GREYLIST_RECORD_LEN) {
				if (n != -1)
					abort();
				continue;
			}
			memcpy(o, opp, sizeof(o));
			if (!live && o[1] == 0) {
				if (n != -1)
					abort();
				continue;
			}
			memcpy(w, rec, sizeof(w));
			if (n != GREYLIST_RECORD_LEN || w[0] != o[0] || w[1] != count + o[1] ||
			    w[2] != (logged || o[2] ? 3u : 2u))
				abort();
		}
	}

	/* reputation: the map holds a struct as is; any bytes of that size are a record */
	if (size >= sizeof(struct reputation_counts)) {
		struct reputation_counts rc, net;

		memcpy(&rc, data, sizeof(rc));
		memcpy(&net, data + size - sizeof(net), sizeof(net));
		reputation_add(&rc, (enum reputation_outcome)(data[0] % (REPUTATION_NOUTCOMES + 1)),
		    now, expire);
		reputation_decay(&net, now, delay);
		reputation_score(&rc, &net, 0.25, 3);
		reputation_score(&rc, NULL, (double)data[1] / 16, (double)data[2] - 8);
	}

	/* RESP replies as the server sends them */
	if (fsr_resp_bounded(data, size)) {
		redisReader *r = redisReaderCreate();
		void *reply = NULL;

		if (r == NULL)
			return 0;
		redisReaderFeed(r, (const char *)data, size);
		for (int i = 0; i < 64 && redisReaderGetReply(r, &reply) == REDIS_OK && reply; i++) {
			const redisReply *rr = reply;

			greylist_parse_reply(reply, &pass, &wait_s);
			/* the reputation lookup's reply: 6 elements per record */
			if (rr->type == REDIS_REPLY_ARRAY)
				for (size_t k = 0; k + 6 <= rr->elements; k += 6) {
					struct reputation_counts rc;

					if (reputation_parse_redis_counts((const redisReply *const *)rr->element + k, &rc)) {
						reputation_decay(&rc, now, expire);
						reputation_score(&rc, &rc, 0.25, 3);
					}
				}
			freeReplyObject(reply);
			reply = NULL;
		}
		redisReaderFree(r);
	}
	return 0;
}
