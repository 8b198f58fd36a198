--- The chat buffer (markdown): the conversation lives in the buffer under "## You" /
--- "## cfgate" headings and the answer streams in. A plain chat sends the whole buffer
--- on every turn; a chat on a named session ("cfgate://chat/NAME") loads the daemon's
--- stored history into the buffer and sends only the new turn, since the daemon adds
--- the history itself (sending it again would store every turn twice).
local config = require("cfgate.config")
local client = require("cfgate.client")

local M = {}

local ns = vim.api.nvim_create_namespace("cfgate_chat")
local BUF_NAME = "cfgate://chat"

local chats = {} -- buf -> { session, loading, req, answer_mark, heading_mark, streamed }
local sessions = require("cfgate.sessions")

local function copts()
  return config.get().chat
end

local function is_heading(line, heading)
  return line ~= nil and vim.trim(line) == heading
end

local function trim_lines(lines)
  local first, last = 1, #lines
  while first <= last and vim.trim(lines[first]) == "" do
    first = first + 1
  end
  while last >= first and vim.trim(lines[last]) == "" do
    last = last - 1
  end
  return table.concat(vim.list_slice(lines, first, last), "\n")
end

--- The conversation in a chat buffer as OpenAI messages (empty sections left out), and
--- the role of the last section.
function M.messages(buf)
  local o = copts()
  local sections = {}
  local current
  for _, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if is_heading(line, o.user_heading) then
      current = { role = "user", lines = {} }
      table.insert(sections, current)
    elseif is_heading(line, o.assistant_heading) then
      current = { role = "assistant", lines = {} }
      table.insert(sections, current)
    elseif current then
      table.insert(current.lines, line)
    end
  end
  local messages = {}
  if o.system_prompt and o.system_prompt ~= "" then
    table.insert(messages, { role = "system", content = o.system_prompt })
  end
  for _, section in ipairs(sections) do
    local content = trim_lines(section.lines)
    if content ~= "" then
      table.insert(messages, { role = section.role, content = content })
    end
  end
  local last = sections[#sections]
  return messages, last and last.role or nil, last and trim_lines(last.lines) or ""
end

local function buffer_name(session)
  return session and (BUF_NAME .. "/" .. session) or BUF_NAME
end

--- The chat buffer of a session (nil: the plain chat), created if asked.
local function chat_buffer(create, session)
  for buf, chat in pairs(chats) do
    if not vim.api.nvim_buf_is_valid(buf) then
      chats[buf] = nil
    elseif chat.session == session then
      return buf
    end
  end
  local name = buffer_name(session)
  for _, existing in ipairs(vim.api.nvim_list_bufs()) do
    if vim.b[existing].cfgate_chat and vim.api.nvim_buf_get_name(existing) == name then
      chats[existing] = { session = session }
      return existing
    end
  end
  if not create then
    return nil
  end
  local o = copts()
  local buf = vim.api.nvim_create_buf(true, true)
  vim.api.nvim_buf_set_name(buf, buffer_name(session))
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "hide"
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = "markdown"
  vim.b[buf].cfgate_chat = true
  vim.b[buf].cfgate_session = session
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { o.user_heading, "", "" })
  chats[buf] = { session = session }
  local keys = o.keymaps or {}
  local function bmap(mode, lhs, fn, desc)
    if lhs and lhs ~= "" then
      vim.keymap.set(mode, lhs, fn, { buffer = buf, desc = desc, silent = true })
    end
  end
  bmap("n", keys.send, function()
    M.send(buf)
  end, "cfgate: send the chat")
  bmap("i", keys.send_insert, function()
    M.send(buf)
  end, "cfgate: send the chat")
  bmap("n", keys.cancel, function()
    M.cancel(buf)
  end, "cfgate: stop the answer")
  vim.api.nvim_create_autocmd("BufWipeout", {
    buffer = buf,
    callback = function()
      M.cancel(buf)
      chats[buf] = nil
    end,
  })
  return buf
end

local function show(buf)
  for _, win in ipairs(vim.api.nvim_tabpage_list_wins(0)) do
    if vim.api.nvim_win_get_buf(win) == buf then
      vim.api.nvim_set_current_win(win)
      return win
    end
  end
  local how = copts().open
  if how == "split" then
    vim.cmd("split")
  elseif how == "tab" then
    vim.cmd("tabnew")
  elseif how ~= "current" then
    vim.cmd("vsplit")
  end
  local win = vim.api.nvim_get_current_win()
  vim.api.nvim_win_set_buf(win, buf)
  vim.wo[win].wrap = true
  vim.wo[win].linebreak = true
  return win
end

local function last_line(buf)
  return vim.api.nvim_buf_line_count(buf) - 1
end

local function append(buf, lines)
  local n = vim.api.nvim_buf_line_count(buf)
  local tail = vim.api.nvim_buf_get_lines(buf, n - 1, n, false)[1]
  if tail == "" and n > 0 then
    vim.api.nvim_buf_set_lines(buf, n - 1, n, false, lines)
  else
    vim.api.nvim_buf_set_lines(buf, n, n, false, lines)
  end
end

--- Windows showing buf whose cursor is on the last line (they follow the stream).
local function followers(buf)
  local list = {}
  local last = last_line(buf)
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_buf(win) == buf and vim.api.nvim_win_get_cursor(win)[1] - 1 >= last then
      table.insert(list, win)
    end
  end
  return list
end

local function to_end(buf, wins)
  local n = vim.api.nvim_buf_line_count(buf)
  local len = #(vim.api.nvim_buf_get_lines(buf, n - 1, n, false)[1] or "")
  for _, win in ipairs(wins) do
    if vim.api.nvim_win_is_valid(win) and vim.api.nvim_win_get_buf(win) == buf then
      vim.api.nvim_win_set_cursor(win, { n, len })
    end
  end
end

local function insert_at(buf, mark, text)
  if text == "" then
    return
  end
  local wins = followers(buf)
  local pos = vim.api.nvim_buf_get_extmark_by_id(buf, ns, mark, {})
  if not pos[1] then
    return
  end
  vim.api.nvim_buf_set_text(buf, pos[1], pos[2], pos[1], pos[2], vim.split(text, "\n", { plain = true }))
  to_end(buf, wins)
end

local err_ns = vim.api.nvim_create_namespace("cfgate_chat_error")
local wait_ns = vim.api.nvim_create_namespace("cfgate_chat_wait")

--- Shows a `$/progress` report's `message` (e.g. "rate limited: waiting 3 s") as virtual
--- text at buffer row `row`, where the answer will stream in: never buffer text, so it
--- is never part of the answer or sent again. Replaces the note shown before.
function M.show_waiting(buf, row, message)
  vim.api.nvim_buf_clear_namespace(buf, wait_ns, 0, -1)
  row = math.max(0, math.min(row, vim.api.nvim_buf_line_count(buf) - 1))
  vim.api.nvim_buf_set_extmark(buf, wait_ns, row, 0, {
    virt_text = { { "cfgate: " .. message, "CfgateStatusRateLimited" } },
    virt_text_pos = "eol",
  })
end

--- Removes the waiting note (the answer has started, or the turn ended).
function M.clear_waiting(buf)
  if vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, wait_ns, 0, -1)
  end
end

--- The waiting note shown in a buffer, or nil.
function M.waiting_text(buf)
  local marks = vim.api.nvim_buf_get_extmarks(buf, wait_ns, 0, -1, { details = true })
  local mark = marks[1]
  return mark and mark[4].virt_text and mark[4].virt_text[1][1] or nil
end

--- Shows why a turn failed as virtual lines under buffer row `row` (not text: a resend
--- must not carry it to the model); the next send clears it.
local function show_error(buf, row, err)
  vim.api.nvim_buf_clear_namespace(buf, err_ns, 0, -1)
  local virt_lines = { { { "", "" } } }
  for _, line in ipairs(vim.split(client.format_error(err), "\n", { plain = true })) do
    table.insert(virt_lines, { { line, "ErrorMsg" } })
  end
  row = math.max(0, math.min(row, vim.api.nvim_buf_line_count(buf) - 1))
  vim.api.nvim_buf_set_extmark(buf, err_ns, row, 0, { virt_lines = virt_lines })
end

--- The error shown in a chat buffer (its lines joined by "\n"), or nil.
function M.error_text(buf)
  local marks = vim.api.nvim_buf_get_extmarks(buf, err_ns, 0, -1, { details = true })
  if #marks == 0 then
    return nil
  end
  local lines = {}
  for _, vl in ipairs(marks[1][4].virt_lines or {}) do
    if vl[1][1] ~= "" then
      table.insert(lines, vl[1][1])
    end
  end
  return table.concat(lines, "\n")
end

local function last_text_row(buf)
  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  for i = #lines, 1, -1 do
    if vim.trim(lines[i]) ~= "" then
      return i - 1
    end
  end
  return 0
end

--- Ends a turn: a fresh "## You" section for the next message; with err (an answer
--- cut short), the reason under what arrived.
local function finish_turn(buf, chat, err)
  M.clear_waiting(buf)
  if chat.answer_mark then
    if err then
      local pos = vim.api.nvim_buf_get_extmark_by_id(buf, ns, chat.answer_mark, {})
      if pos[1] then
        show_error(buf, pos[1], err)
      end
    end
    insert_at(buf, chat.answer_mark, "\n\n" .. copts().user_heading .. "\n\n")
    vim.api.nvim_buf_del_extmark(buf, ns, chat.answer_mark)
  end
  if chat.heading_mark then
    vim.api.nvim_buf_del_extmark(buf, ns, chat.heading_mark)
  end
  chat.req, chat.answer_mark, chat.heading_mark = nil, nil, nil
end

--- Removes the failed answer's section, leaving the user's message to send again, with
--- the error under it.
local function drop_turn(buf, chat, err)
  M.clear_waiting(buf)
  if chat.heading_mark then
    local pos = vim.api.nvim_buf_get_extmark_by_id(buf, ns, chat.heading_mark, {})
    if pos[1] then
      vim.api.nvim_buf_set_lines(buf, pos[1], -1, false, {})
      -- Leave one empty line after the message so typing can go on.
      local n = vim.api.nvim_buf_line_count(buf)
      local tail = vim.api.nvim_buf_get_lines(buf, n - 1, n, false)[1]
      if tail ~= "" then
        vim.api.nvim_buf_set_lines(buf, n, n, false, { "" })
      end
    end
    vim.api.nvim_buf_del_extmark(buf, ns, chat.heading_mark)
  end
  if chat.answer_mark then
    vim.api.nvim_buf_del_extmark(buf, ns, chat.answer_mark)
  end
  if err then
    show_error(buf, last_text_row(buf), err)
  end
  chat.req, chat.answer_mark, chat.heading_mark = nil, nil, nil
end

--- Whether an answer is streaming into (or the history loading into) a chat buffer;
--- without buf, the plain chat's.
function M.busy(buf)
  buf = buf or chat_buffer(false)
  local chat = buf and chats[buf]
  return chat ~= nil and (chat.req ~= nil or chat.loading == true)
end

--- The session a chat buffer continues, or nil.
function M.session(buf)
  local chat = chats[buf or vim.api.nvim_get_current_buf()]
  return chat and chat.session or nil
end

--- What a turn sends: the whole conversation for a plain chat; for a session only the
--- messages after the last answer (the daemon puts the stored history in front), with
--- the system prompt, which the daemon keeps as the session's latest.
local function turn_messages(messages, session)
  if not session then
    return messages
  end
  local last_answer = 0
  for i, m in ipairs(messages) do
    if m.role == "assistant" then
      last_answer = i
    end
  end
  local out = {}
  for i, m in ipairs(messages) do
    if m.role == "system" or i > last_answer then
      table.insert(out, m)
    end
  end
  return out
end

local function chat_done()
  vim.api.nvim_exec_autocmds("User", { pattern = "CfgateChatDone", modeline = false })
end

--- Sends the conversation in the chat buffer; the answer streams in below.
function M.send(buf)
  buf = buf or chat_buffer(true)
  local chat = chats[buf]
  if chat.loading then
    chat.send_after_load = true
    return
  end
  if chat.req then
    vim.notify("cfgate: an answer is still streaming (" .. (copts().keymaps.cancel or ":CfgateStop") .. " stops it)", vim.log.levels.WARN)
    return
  end
  local o = copts()
  local messages, last_role, last_text = M.messages(buf)
  if last_role ~= "user" or last_text == "" then
    vim.notify("cfgate: write a message under '" .. o.user_heading .. "' first", vim.log.levels.WARN)
    return
  end
  vim.api.nvim_buf_clear_namespace(buf, err_ns, 0, -1)
  local wins = followers(buf)
  append(buf, { "", o.assistant_heading, "", "" })
  local heading_row = last_line(buf) - 2
  chat.heading_mark = vim.api.nvim_buf_set_extmark(buf, ns, heading_row - 1, 0, { right_gravity = false })
  chat.answer_mark = vim.api.nvim_buf_set_extmark(buf, ns, last_line(buf), 0, {})
  chat.streamed = false
  to_end(buf, wins)
  local params = vim.tbl_extend("force", vim.deepcopy(o.params or {}), {
    messages = turn_messages(messages, chat.session),
    session = chat.session,
  })
  local req
  req = client.request("cfgate/chat", params, {
    on_progress = function(value)
      if chat.req ~= req or not vim.api.nvim_buf_is_valid(buf) then
        return
      end
      if value.kind ~= "report" then
        return
      end
      if type(value.content) == "string" then
        if not chat.streamed then
          M.clear_waiting(buf)
        end
        chat.streamed = true
        insert_at(buf, chat.answer_mark, value.content)
      elseif type(value.message) == "string" and not chat.streamed then
        local pos = vim.api.nvim_buf_get_extmark_by_id(buf, ns, chat.answer_mark, {})
        if pos[1] then
          M.show_waiting(buf, pos[1], value.message)
        end
      end
    end,
    on_result = function(result)
      if chat.req ~= req or not vim.api.nvim_buf_is_valid(buf) then
        return
      end
      if not chat.streamed and type(result) == "table" and type(result.content) == "string" then
        insert_at(buf, chat.answer_mark, result.content)
      end
      finish_turn(buf, chat)
      chat_done()
    end,
    on_error = function(err)
      if chat.req ~= req or not vim.api.nvim_buf_is_valid(buf) then
        return
      end
      if type(err) == "table" and err.code == client.CANCELLED then
        finish_turn(buf, chat)
      elseif chat.streamed then
        -- Part of the answer is shown: keep it, and say under it why it stopped.
        finish_turn(buf, chat, err)
        client.notify_error(err)
      else
        drop_turn(buf, chat, err)
        client.notify_error(err)
      end
      chat_done()
    end,
  })
  if not req.done then
    chat.req = req
  end
end

--- Stops the answer streaming into the chat buffer; what arrived stays.
function M.cancel(buf)
  buf = buf or chat_buffer(false)
  local chat = buf and chats[buf]
  if not chat or not chat.req then
    return
  end
  chat.req:cancel()
  if vim.api.nvim_buf_is_valid(buf) then
    finish_turn(buf, chat)
  end
end

--- Stops the answers streaming into every chat buffer.
function M.cancel_all()
  for buf in pairs(chats) do
    M.cancel(buf)
  end
end

--- Reloads a session buffer from the daemon's `cfgate/session` (the turns any client
--- stored); a message being written under the last "## You" is kept. The functions in
--- chat.after_load (text given while it loads) run after.
local function load_session(buf)
  local chat = chats[buf]
  chat.loading = true
  chat.after_load = chat.after_load or {}
  local _, last_role, draft = M.messages(buf)
  client.request("cfgate/session", { name = chat.session }, {
    on_result = function(result)
      chat.loading = false
      if not vim.api.nvim_buf_is_valid(buf) then
        return
      end
      local wins = followers(buf)
      local lines = sessions.history_lines(type(result) == "table" and result.messages or {})
      if last_role == "user" and draft ~= "" then
        lines[#lines] = nil
        vim.list_extend(lines, vim.split(draft, "\n", { plain = true }))
      end
      vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
      to_end(buf, wins)
      vim.api.nvim_exec_autocmds("User", { pattern = "CfgateSessionLoaded", modeline = false })
      local send = chat.send_after_load
      local after = chat.after_load
      chat.send_after_load, chat.after_load = nil, nil
      for _, fn in ipairs(after or {}) do
        fn()
      end
      if send then
        M.send(buf)
      end
    end,
    on_error = function(err)
      chat.loading = false
      chat.send_after_load, chat.after_load = nil, nil
      client.notify_error(err)
    end,
  })
end

--- :CfgateChat [text]: opens the chat; with text, adds it as your message and sends.
--- Without text in the chat buffer, sends what you wrote under the last "## You".
---@param text string|nil
---@param opts { new: boolean?, session: string? }|nil  new: start a new plain conversation;
---  session: continue that named conversation (default: the `chat.session` option)
function M.open(text, opts)
  opts = opts or {}
  local session = opts.session
  local current = vim.api.nvim_get_current_buf()
  if session == nil and not opts.new then
    -- From a chat buffer: that chat's session; elsewhere the default one.
    if vim.b[current].cfgate_chat then
      session = M.session(current)
    else
      session = sessions.default_session()
    end
  end
  if session ~= nil and sessions.session_name(session) ~= session then
    vim.notify(
      ("cfgate: invalid session name %q\nhint: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"):format(session),
      vim.log.levels.ERROR
    )
    return nil
  end
  local from_chat = vim.b[current].cfgate_chat == true and M.session(current) == session
  local buf = chat_buffer(true, session)
  local o = copts()
  if opts.new then
    M.cancel(buf)
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, { o.user_heading, "", "" })
  end
  local win = show(buf)
  -- The window shows the end, so it follows the answer from the first turn on.
  to_end(buf, { win })
  if text and text ~= "" then
    if M.busy(buf) and not chats[buf].loading then
      vim.notify("cfgate: an answer is still streaming", vim.log.levels.WARN)
      return buf
    end
  end
  local function add_text()
    if not text or text == "" then
      return
    end
    local _, last_role = M.messages(buf)
    if last_role == "user" then
      append(buf, vim.split(text, "\n", { plain = true }))
    else
      append(buf, { "", o.user_heading, "", "" })
      append(buf, vim.split(text, "\n", { plain = true }))
    end
  end
  local chat = chats[buf]
  if session and (chat.loading or not M.busy(buf)) then
    -- Every open shows the turns other clients stored since (text given meanwhile
    -- goes in after them).
    if not chat.loading then
      load_session(buf)
    end
    table.insert(chat.after_load, add_text)
    if (text and text ~= "") or (from_chat and not opts.new) then
      chat.send_after_load = true
    end
    return buf
  end
  add_text()
  if (text and text ~= "") or (from_chat and not opts.new) then
    M.send(buf)
  end
  return buf
end

return M
