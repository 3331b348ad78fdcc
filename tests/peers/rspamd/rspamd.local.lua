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
  -- a negative order counts from the end of the header block rspamd was shown, one past
  -- its top goes on top (rspamd_milter.c: INSHEADER cur_hdr + order + 1, else 0); one
  -- field's array, applied in its order (the keys of add_headers come in a hash order that
  -- changes between scans, and each insert moves the ones after it)
  ['FORCE-ORDER'] = { nil, nil, { add_headers = { ['X-Order'] = {
      { value = 'o3', order = -3 }, { value = 'o1', order = -1 }, { value = 'o99', order = -99 } } } } },
  -- an order that is no number: a string, a boolean, a float (rspamd_milter.c takes any
  -- order it finds: ucl_object_toint, 0 for what is no number, 1 for 1.5)
  ['FORCE-OTYPE'] = { nil, nil, { add_headers = {
      ['X-Ostr'] = { value = 's', order = '2' }, ['X-Obool'] = { value = 'b', order = true },
      ['X-Ofloat'] = { value = 'f', order = 1.5 } } } },
  -- remove_headers with negative-order inserts of the same name: the last X-Dup removed,
  -- two inserted counted from the end of the fields rspamd was shown
  ['FORCE-RMORDER'] = { nil, nil, { remove_headers = { ['X-Dup'] = -1 }, add_headers = { ['X-Dup'] = {
      { value = 'n1', order = -1 }, { value = 'n3', order = -3 } } } } },
  -- the same with every X-Dup removed (two fields gone)
  ['FORCE-RMALL'] = { nil, nil, { remove_headers = { ['X-Dup'] = 0 }, add_headers = { ['X-Dup'] = {
      { value = 'n1', order = -1 }, { value = 'n3', order = -3 } } } } },
  -- an smtp_message holding a CRLF / a bare LF
  ['FORCE-CRLF'] = { 'reject', 'line one\r\nline two' },
  ['FORCE-BARELF'] = { 'soft reject', 'line one\nline two' },
  -- rspamd's own actions discard and quarantine (force_actions may set them)
  ['FORCE-ACT-DISCARD'] = { 'discard' },
  ['FORCE-ACT-QUARANTINE'] = { 'quarantine' },
  ['FORCE-BODY-DISCARD'] = { 'discard' },
}

rspamd_config:register_symbol({
  name = 'MXTEST_FORCE',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local subj = task:get_subject() or ''
    -- a rewritten body (task:set_message, as a footer-adding rule does): rspamd sends it
    -- after the JSON to a client that asks with Flags: body_block
    -- FORCE-BODY-DISCARD: the same with rspamd's discard action
    if subj:find('FORCE-BODY', 1, true) then
      task:set_message(tostring(task:get_raw_headers()) .. '\r\nRewritten by mxtest.\r\n')
    end
    -- FORCE-ORDER: none of milter_headers' fields (its inserts, in hash order, would move
    -- the test's), as a settings rule turning its routines off does
    if subj:find('FORCE-ORDER', 1, true) or subj:find('FORCE-OTYPE', 1, true) or
        subj:find('FORCE-RMORDER', 1, true) or subj:find('FORCE-RMALL', 1, true) then
      task:cache_set('settings', { plugins = { milter_headers = { routines = {} } } })
    end
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
