/* test_eval_html.c — SpamAssassin's HTML analysis (rules/html.c) and the HTMLEval tests over
 * it (rules/eval_html.c): tag balance, text style (low contrast, invalid colours, sizes),
 * images and their area, comments, titles, anchors, forms, embeds, iframes, obfuscation,
 * and the rendered text body rules see. The rule expectations were checked against
 * spamassassin 4.0.1 (MX_ET_DUMP). */
#include "eval_testlib.h"

#include "rules/html.h"

/* Under a sanitizer a buffer is allocated at exactly the octets read (an overread fails). */
#if defined(__SANITIZE_ADDRESS__)
#define MX_SANITIZED_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MX_SANITIZED_BUILD 1
#endif
#endif
#ifndef MX_SANITIZED_BUILD
#define MX_SANITIZED_BUILD 0
#endif

static const char rules[] =
    "body HTML_MESSAGE eval:html_test('html')\n"
    "body __TAG_EXISTS_HTML eval:html_tag_exists('html')\n"
    "body __TAG_EXISTS_HEAD eval:html_tag_exists('head')\n"
    "body HTML_TAG_BALANCE_BODY eval:html_tag_balance('body', '!= 0')\n"
    "body HTML_TAG_BALANCE_HEAD eval:html_tag_balance('head', '!= 0')\n"
    "body HTML_TAG_EXIST_BGSOUND eval:html_tag_exists('bgsound')\n"
    "body HTML_FONT_LOW_CONTRAST eval:html_test('font_low_contrast')\n"
    "body __KAM_HTML_FONT_INVALID eval:html_test('font_invalid_color')\n"
    "body HTML_FONT_FACE_BAD eval:html_test('font_face_bad')\n"
    "body HTML_FORMACTION_MAILTO eval:html_test('form_action_mailto')\n"
    "body HTML_EMBEDS eval:html_test('embeds')\n"
    "body HTML_IFRAME_SRC eval:check_iframe_src()\n"
    "body HTML_FONT_SIZE_HUGE eval:html_range('max_size', '6', 'inf')\n"
    "body HTML_FONT_SIZE_LARGE eval:html_range('max_size', '5', '6')\n"
    "body HTML_COMMENT_SHORT eval:html_text_match('comment', '<!(?!-).{0,6}>')\n"
    "body HTML_COMMENT_SAVED_URL eval:html_text_match('comment', "
    "'<!-- saved from url=\\(\\d{4}\\)')\n"
    "body __HTML_LINK_IMAGE eval:html_text_match('anchor', '<img>')\n"
    "body __HTML_TITLE_SUBJ_DIFF eval:html_title_subject_ratio('3.5')\n"
    "body HTML_IMAGE_ONLY_04 eval:html_image_only('0000','0400')\n"
    "body HTML_IMAGE_ONLY_08 eval:html_image_only('0400','0800')\n"
    "body HTML_IMAGE_RATIO_02 eval:html_image_ratio('0.000','0.002')\n"
    "body HTML_EXTRA_CLOSE eval:html_range('closed_extra_ratio', '0.09', 'inf')\n"
    "body HTML_BADTAG_90_100 eval:html_range('bad_tag_ratio','0.90','1.00')\n"
    "body HTML_OBFUSCATE_30_40 eval:html_range('obfuscation_ratio','.3','.4')\n"
    "body __HTML_LENGTH_384 eval:html_eval('length', '< 384')\n"
    "body __HTML_LENGTH_0000_1024 eval:html_range('length', '0', '1024')\n"
    "body __HTML_LENGTH_1024_1536 eval:html_range('length', '1024', '1536')\n"
    "body VISIBLE_TEXT /secret offer/\n"
    "body VISIBLE_DRUG /Viagra and Cialis, cheap today/\n"
    "body TAG_TEXT_LEFT /<[:_]x/\n"
    "body TAG_DROPPED /hello world again/\n"
    "rawbody RAW_TAG /<font color/\n";

#define HTML_HDR(subj) "From: a@example.org\nTo: b@example.net\nSubject: " subj "\n" \
	"Date: Mon, 2 Sep 2002 10:00:00 +0000\nMessage-ID: <1@example.org>\nMIME-Version: 1.0\n" \
	"Content-Type: text/html; charset=us-ascii\n\n"
#define HTML(body) HTML_HDR("hello") body "\n"

#define PARA "<p>We met at the conference last week and talked about the new release of the " \
	"scheduler. Here are the notes I promised you, with the dates of the next review.</p>"

static const struct et_case cases[] = {
	{ "a plain HTML document",
	  HTML("<html><head><title>hello</title></head><body>" PARA "</body></html>"),
	  "HTML_MESSAGE,__TAG_EXISTS_HTML,__TAG_EXISTS_HEAD,__HTML_LENGTH_384,"
	  "__HTML_LENGTH_0000_1024",
	  "HTML_TAG_BALANCE_BODY,HTML_TAG_BALANCE_HEAD,HTML_FONT_LOW_CONTRAST,HTML_EXTRA_CLOSE,"
	  "__HTML_TITLE_SUBJ_DIFF,HTML_IMAGE_ONLY_04,HTML_BADTAG_90_100" },
	/* HTML::Parser starts a tag at '<' and a letter, '_' or ':' (XML's name start); other
	 * characters leave the '<' text */
	{ "tags named :x and _x are tags, dropped from the text",
	  HTML("<html><body><p>hello <:x a=1>world <_x>again</p></body></html>"),
	  "TAG_DROPPED", "TAG_TEXT_LEFT" },
	{ "<1x> and <.x> are text",
	  HTML("<html><body><p>hello <1x>world <.x>again</p></body></html>"),
	  NULL, "TAG_DROPPED" },
	{ "two <body> tags",
	  HTML("<html><body><body>" PARA "</body></html>"),
	  "HTML_TAG_BALANCE_BODY", "HTML_TAG_BALANCE_HEAD" },
	{ "white text on a white page",
	  HTML("<html><body bgcolor=\"#ffffff\">" PARA "<font color=\"#fefefe\">secret offer "
	  "inside, buy cheap now</font></body></html>"),
	  "HTML_FONT_LOW_CONTRAST,VISIBLE_TEXT,RAW_TAG", NULL },
	{ "a colour that is not one",
	  HTML("<html><body><font color=\"#zzqqxx\">hello there</font>" PARA "</body></html>"),
	  "__KAM_HTML_FONT_INVALID", "HTML_FONT_LOW_CONTRAST" },
	{ "a font face made of digits",
	  HTML("<html><body><font face=\"12345\">hello there</font>" PARA "</body></html>"),
	  "HTML_FONT_FACE_BAD", NULL },
	{ "a font face list",
	  HTML("<html><body><font face=\"Arial, Helvetica, sans-serif\">hi</font>" PARA
	  "</body></html>"), NULL, "HTML_FONT_FACE_BAD" },
	{ "a form that mails, an embed, an iframe, a bgsound",
	  HTML("<html><body>" PARA "<form action=\"mailto:x@example.org\"><input type=submit>"
	  "</form><embed src=\"http://example.com/a.swf\"><iframe src=\"http://example.com/f\">"
	  "</iframe><bgsound src=\"a.wav\"></body></html>"),
	  "HTML_FORMACTION_MAILTO,HTML_EMBEDS,HTML_IFRAME_SRC,HTML_TAG_EXIST_BGSOUND", NULL },
	{ "huge and large fonts",
	  HTML("<html><body><font size=\"+7\">BIG</font>" PARA "</body></html>"),
	  "HTML_FONT_SIZE_HUGE", "HTML_FONT_SIZE_LARGE" },
	{ "a short comment and a saved-from-url one",
	  HTML("<!-- saved from url=(0022)http://example.com/ -->\n<html><body><!x>" PARA
	  "</body></html>"),
	  "HTML_COMMENT_SHORT,HTML_COMMENT_SAVED_URL", NULL },
	{ "an image link and nothing else",
	  HTML("<html><body><a href=\"http://example.com/\"><img src=\"http://example.com/a.gif\" "
	  "width=\"600\" height=\"400\"></a>Click here</body></html>"),
	  "__HTML_LINK_IMAGE,HTML_IMAGE_ONLY_04,HTML_IMAGE_RATIO_02", "HTML_IMAGE_ONLY_08" },
	{ "a title that is not the subject",
	  HTML_HDR("hi") "<html><head><title>Your account statement for this month is ready, "
	  "please log in to view it</title></head><body>" PARA "</body></html>\n",
	  "__HTML_TITLE_SUBJ_DIFF", NULL },
	{ "closing tags that were never opened",
	  HTML("<html><body>" PARA "</b></i></u></font></b></i></u></font></body></html>"),
	  "HTML_EXTRA_CLOSE", NULL },
	{ "tags that are not HTML, and no HTML tag at all: no ratio",
	  HTML("<foo><bar><baz><qux>hello<quux><corge><grault><garply><waldo><fred><plugh>"),
	  NULL, "HTML_BADTAG_90_100,__TAG_EXISTS_HTML" },
	{ "ten tags that are not HTML and one that is",
	  HTML("<foo><bar><baz><qux>hello<quux><corge><grault><garply><waldo><fred><p>"),
	  "HTML_BADTAG_90_100", "__TAG_EXISTS_HTML" },
	{ "words cut by tags",
	  HTML("<html><body>V<b></b>iag<i></i>ra and Ci<u></u>al<b></b>is, che<i></i>ap "
	  "tod<u></u>ay</body></html>"),
	  "HTML_OBFUSCATE_30_40,VISIBLE_DRUG", NULL },
};

static void test_html_evals(void **state)
{
	(void)state;
	et_run_cases(rules, cases, sizeof(cases) / sizeof(cases[0]));
}

static void count_uri(const char *uri, size_t len, void *arg)
{
	(void)uri;
	(void)len;
	(*(int *)arg)++;
}

/* The analysis itself: the rendered text (SA turns &nbsp; into a space first), what is
 * left out of it, links, image area, comments, titles, anchors, tag balance. */
static void test_html_analyze(void **state)
{
	static const char doc[] = "<html><head><title>T</title><style>p { color: red }</style>"
	    "</head><body><p>Hello&nbsp;&amp; welcome</p><div style=\"display:none\">hidden</div>"
	    "<script>var x = 1;</script><a href=\"http://example.com/x\">link</a>"
	    "<img src=\"http://example.com/i.png\" width=10 height=20><!-- note --></body></html>";
	struct html_result r;
	int nuri = 0;

	(void)state;
	html_analyze(doc, strlen(doc), &r, count_uri, &nuri);
	assert_non_null(r.rendered);
	assert_non_null(strstr(r.rendered, "Hello & welcome"));
	assert_null(strstr(r.rendered, "var x"));
	assert_null(strstr(r.rendered, "color: red"));
	assert_int_equal(nuri, 3);       /* img src, a href resolved and a href as written */
	assert_true(r.image_area == 200);
	assert_int_equal(r.ncomment, 1);
	assert_int_equal(r.ntitle, 1);
	assert_string_equal(r.title[0], "T");
	assert_int_equal(r.nanchor, 1);
	assert_string_equal(r.anchor[0], "link");
	assert_non_null(html_inside(&r, "body"));
	assert_int_equal(html_inside(&r, "body")->n, 0);
	assert_null(html_inside(&r, "table"));
	html_result_free(&r);
}

/* The analysis of a part SA's substitutions (&nbsp;, <br/>, curly quotes) leave as it is
 * reads the part where the parse has it, with no NUL after it: every prefix of a document
 * of no such substitution is analysed with different octets after its end (a NUL, then
 * markup), the results the same: nothing past the end is read (under ASan the buffer is
 * exactly the prefix, an overread fails). */
static void test_html_analyze_in_place(void **state)
{
	static const char doc[] = "<!DOCTYPE html><html><head><title>T &amp; U</title>"
	    "<style>p { color: red }</style></head><body bgcolor=\"#fff\" text='#000'>"
	    "<p>Hello &amp; welcome &#x41;&#66 &lt</p><div style=\"display:none\">hidden</div>"
	    "<script>var x = 1; if (a < b) {}</script><a href=\"http://example.com/x\">link</a>"
	    "<img src=http://example.com/i.png width=10 height=20 alt=\"i\"><!-- note -- >"
	    "<!x><?pi?></ x><font color=red size=+2>big</font><br><textarea>a&lt;</textarea>"
	    "<table><tr><td>cell</td></tr></table> 1 < 2 <a href=\"mailto:a@b.example\">m</a>"
	    "<plaintext><b>rest</b>";
	static const char *const after[] = { "\0", ">x</title></script>\"'&amp;<b>",
	    "-->\" x;</textarea>" };
	size_t n = strlen(doc);

	(void)state;
	for (size_t k = 0; k <= n; k++) {
		struct html_result r[3];
		int nuri[3] = { 0, 0, 0 };

		for (int a = 0; a < 3; a++) {
			size_t al = MX_SANITIZED_BUILD ? 0 : (a ? strlen(after[a]) : 1);
			char *b = malloc(k + al ? k + al : 1);

			assert_non_null(b);
			memcpy(b, doc, k);
			memcpy(b + k, after[a], al);
			html_analyze(b, k, &r[a], count_uri, &nuri[a]);
			free(b);
		}
		for (int a = 1; a < 3; a++) {
			assert_int_equal(r[0].rendered_len, r[a].rendered_len);
			assert_memory_equal(r[0].rendered, r[a].rendered, r[0].rendered_len);
			assert_int_equal(nuri[0], nuri[a]);
			assert_int_equal(r[0].ncomment, r[a].ncomment);
			assert_int_equal(r[0].ntitle, r[a].ntitle);
			assert_int_equal(r[0].nanchor, r[a].nanchor);
			assert_int_equal(r[0].ninside, r[a].ninside);
			assert_true(r[0].image_area == r[a].image_area && r[0].max_size == r[a].max_size);
		}
		for (int a = 0; a < 3; a++)
			html_result_free(&r[a]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_html_evals),
		cmocka_unit_test(test_html_analyze),
		cmocka_unit_test(test_html_analyze_in_place),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
