#!/usr/bin/perl
# sa_oracle.pl — SpamAssassin's own view of messages, for bench_detection.py --oracle and for
# finding where mxgate's rules engine and SpamAssassin part ways: every rule SA hits
# (including the __ sub-rules metas use), the score, the relay strings (X-Spam-Relays-*)
# and EnvelopeFrom. Runs Mail::SpamAssassin in-process with the benchmark's settings
# (site dir with local.cf and the .pre files, local tests only).
#
#   sa_oracle.pl SITEDIR LISTFILE > out.jsonl     (LISTFILE: one message path a line)
#
# One JSON object a line: {"path", "sha1", "score", "tests", "hits": {RULE: value},
#   "relays": {"trusted", "untrusted", "internal", "external"}, "envfrom"}.
#
# One process checks the whole list, as spamd's child does: SA 4.0.1's capture-template
# rules (%{GB_TO_ADDR} in __GB_CUSTOM_HTM_URI0..2 and others) keep the tag values of the
# first message they ran for (Check.pm matches with /o), so their hits depend on the order
# of the list; mxgate leaves them unknown (docs/rules.md).
use strict;
use warnings;
use Digest::SHA qw(sha1_hex);
use JSON::PP;
use Mail::SpamAssassin;

my ($site, $list) = @ARGV;
die "usage: $0 SITEDIR LISTFILE\n" unless defined $list;
my $sa = Mail::SpamAssassin->new({
	site_rules_filename => $site,
	userprefs_filename  => "$site/user_prefs",
	local_tests_only    => 1,
	dont_copy_prefs     => 1,
	home_dir_for_helpers => $site,
});
$sa->compile_now(0, 1);
my $json = JSON::PP->new->canonical(1);
open(my $lf, '<', $list) or die "$list: $!\n";
$| = 1;
while (my $path = <$lf>) {
	chomp $path;
	next if $path eq '';
	my $text = do {
		# slurp in a block of its own: $/ must be back to "\n" while SA runs (its
		# chomp()s depend on it)
		open(my $fh, '<', $path) or do { warn "$path: $!\n"; next };
		binmode $fh;
		local $/;
		<$fh>;
	};
	my $mail = $sa->parse($text);
	my $pms = $sa->check($mail);
	my %hits;
	my $h = $pms->{tests_already_hit} || {};
	for my $k (keys %$h) {
		$hits{$k} = $h->{$k} + 0 if $h->{$k};
	}
	my $env = $pms->get('EnvelopeFrom');
	print $json->encode({
		path => $path,
		sha1 => sha1_hex($text),
		score => $pms->get_score() + 0,
		tests => [sort split(/,/, $pms->get_names_of_tests_hit())],
		hits => \%hits,
		relays => {
			trusted => $pms->{relays_trusted_str} // '',
			untrusted => $pms->{relays_untrusted_str} // '',
			internal => $pms->{relays_internal_str} // '',
			external => $pms->{relays_external_str} // '',
		},
		envfrom => $env // '',
	}), "\n";
	$pms->finish();
	$mail->finish();
}
