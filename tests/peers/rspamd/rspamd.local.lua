-- The tests' forced verdicts: a word in the Subject picks rspamd's action (a pre-result, as
-- force_actions sets one) and what a local rule may put in the reply's milter block
-- (task:set_milter_reply). Everything else is scanned as it comes (ham, no action).
local forced = {
  ['FORCE-REJECT'] = { 'reject', 'mxtest says no' },
  ['FORCE-SOFT'] = { 'soft reject', 'mxtest says later' },
  ['FORCE-REWRITE'] = { 'rewrite subject' },
  ['FORCE-ADDHDR'] = { 'add header' },
  ['FORCE-GREYLIST'] = { 'greylist' },
  ['FORCE-DISCARD'] = { 'reject', nil, { reject = 'discard' } },
  ['FORCE-QUARANTINE'] = { 'reject', nil, { reject = 'quarantine' } },
  ['FORCE-NOACT'] = { 'reject', 'not applied', { no_action = true } },
  ['FORCE-SPAMHDR'] = { 'add header', nil, { spam_header = 'spammy' } },
  ['FORCE-ENVELOPE'] = { nil, nil, { change_from = 'bounces@example.org',
                                      add_rcpt = { 'added@example.test' },
                                      del_rcpt = { 'gone@example.test' } } },
}

rspamd_config:register_symbol({
  name = 'MXTEST_FORCE',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local subj = task:get_subject() or ''
    for word, f in pairs(forced) do
      if subj:find(word, 1, true) then
        if f[3] then
          task:set_milter_reply(f[3])
        end
        if f[1] then
          task:set_pre_result(f[1], f[2] or '', 'mxtest')
        end
      end
    end
  end,
})

-- 5 points (rspamd's greylist threshold is 4, add header 6) for SCORE-GREYLIST: the action
-- greylist reached by the score, so that the greylist module (a postfilter, which a
-- pre-result skips) turns it into a soft reject
rspamd_config:register_symbol({
  name = 'MXTEST_SCORE',
  score = 5.0,
  group = 'mxtest',
  callback = function(task)
    if (task:get_subject() or ''):find('SCORE-GREYLIST', 1, true) then
      task:insert_result('MXTEST_SCORE', 1.0)
    end
  end,
})
