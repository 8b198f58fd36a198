-- Headless tests of the cfgate Neovim plugin against the real daemon and the fake gateway.
-- Run by test/run.sh; each test is a coroutine that yields to Neovim's main loop while it
-- waits, so typed keys, timers, autocommands and LSP messages all run for real.

local H = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "harness.lua"))
local url, bin, fake = H.url, H.bin, H.fake
local test, wait_for, check, feed, mode = H.test, H.wait_for, H.check, H.feed, H.mode
local buf_text, find_note, notes_text = H.buf_text, H.find_note, H.notes_text

-- Tests -----------------------------------------------------------------------------------

local cfgate = require("cfgate")
local inline = require("cfgate.inline")
local chat = require("cfgate.chat")

local base_url = url .. "/v1/acc/gw/compat"
local default_model = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"

test("a missing executable is reported clearly", function()
  cfgate.setup({ cmd = { "/nonexistent/cfgate", "serve" } })
  vim.cmd("CfgateStatus")
  local n = wait_for("a notification", function()
    return find_note("executable not found")
  end, 2000)
  check(n.msg:find("^cfgate: ") ~= nil, "message not prefixed: %s", n.msg)
  check(require("cfgate.client").get() == nil, "a client was started")
  -- Entering file buffers does not repeat the error (code_actions attaches to them).
  H.notes = {}
  vim.cmd("enew")
  vim.cmd("enew")
  check(#H.notes == 0, "errors on entering buffers: %s", notes_text())
  vim.cmd("bwipeout! #")
end)

test("an unknown settings key is refused before the daemon starts", function()
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = base_url, bogus = 1 } })
  vim.cmd("CfgateStatus")
  local n = wait_for("a notification", function()
    return find_note("unknown settings key(s): bogus")
  end, 2000)
  check(n.msg:find("\nhint: ", 1, true) ~= nil, "no hint: %s", n.msg)
  check(require("cfgate.client").get() == nil, "a client was started")
end)

test("setup and cfgate/status against the fake gateway", function()
  cfgate.setup({
    cmd = { bin, "serve" },
    settings = { base_url = base_url },
    inline = { debounce_ms = 60 },
  })
  local st
  cfgate.status(function(s)
    st = s
  end)
  wait_for("cfgate/status", function()
    return st
  end)
  check(st.credentials_complete == true, "credentials not complete: %s", vim.inspect(st))
  check(st.base_url == base_url, "base_url %s", tostring(st.base_url))
  check(#vim.lsp.get_clients({ name = "cfgate" }) == 1, "expected one cfgate LSP client")
  -- One client per Neovim: starting again reuses it.
  cfgate.start()
  check(#vim.lsp.get_clients({ name = "cfgate" }) == 1, "a second client was started")
end)

test(":CfgateChat streams the answer into the chat buffer and keeps the history", function()
  fake.reset()
  local buf = chat.open(nil)
  local updates = 0
  vim.api.nvim_buf_attach(buf, false, {
    on_lines = function()
      updates = updates + 1
    end,
  })
  vim.cmd("wincmd p")
  vim.cmd("CfgateChat hello there")
  check(chat.busy(buf), "no request in flight after :CfgateChat")
  wait_for("the answer", function()
    return not chat.busy(buf) and buf_text(buf):find("echo: hello there", 1, true)
  end)
  check(vim.bo[buf].filetype == "markdown", "chat filetype %s", vim.bo[buf].filetype)
  -- One piece per word: several buffer updates, not one.
  check(updates >= 4, "the answer did not stream (%d buffer updates)", updates)
  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  check(
    vim.deep_equal(lines, { "## You", "", "hello there", "", "## cfgate", "", "echo: hello there", "", "## You", "", "" }),
    "chat buffer: %s",
    vim.inspect(lines)
  )
  local reqs = fake.chat_requests()
  check(#reqs == 1, "%d chat requests", #reqs)
  check(reqs[1].body.stream == true, "not streamed upstream")

  -- Second turn: the whole conversation is sent.
  vim.cmd("CfgateChat how are you")
  wait_for("the second answer", function()
    return not chat.busy(buf) and buf_text(buf):find("echo: how are you", 1, true)
  end)
  reqs = fake.chat_requests()
  check(#reqs == 2, "%d chat requests", #reqs)
  local messages = reqs[2].body.messages
  check(#messages == 3, "history of %d messages: %s", #messages, vim.inspect(messages))
  check(messages[2].role == "assistant" and messages[2].content == "echo: hello there", "assistant message %s", vim.inspect(messages[2]))
  check(messages[3].role == "user" and messages[3].content == "how are you", "user message %s", vim.inspect(messages[3]))

  -- Typing under the last heading and pressing <CR> in the chat buffer sends it.
  vim.api.nvim_set_current_win(vim.fn.bufwinid(buf))
  feed("Githird one<Esc>")
  wait_for("normal mode", function()
    return mode() == "n"
  end)
  feed("<CR>", "mt")
  wait_for("the third answer", function()
    return not chat.busy(buf) and buf_text(buf):find("echo: third one", 1, true)
  end)
  check(#fake.chat_requests() == 3, "%d chat requests", #fake.chat_requests())
  vim.cmd("only")
end)

-- The shared daemon of the next two tests: its own runtime dir, sessions dir and config
-- file (the gateway URL), so the CLI and a second Neovim reach the same daemon.
local shared_dir = vim.fn.tempname()
local shared_env = {
  CFGATE_RUNTIME_DIR = shared_dir .. "/run",
  CFGATE_DATA_DIR = shared_dir .. "/data",
  CFGATE_CONFIG = shared_dir .. "/config.toml",
}

local function use_shared_daemon()
  vim.fn.mkdir(shared_dir, "p")
  vim.fn.writefile({ ('base_url = "%s"'):format(base_url) }, shared_env.CFGATE_CONFIG)
  for k, v in pairs(shared_env) do
    vim.env[k] = v
  end
  cfgate.setup({ cmd = { bin, "serve", "--shared" }, settings = {}, inline = { debounce_ms = 60 } })
end

--- Runs a process to its end (waiting on its exit, reaped by vim.system): the result.
local function run(cmd, env)
  local done
  vim.system(cmd, { text = true, env = env }, function(r)
    done = r
  end)
  return wait_for(table.concat(cmd, " "), function()
    return done
  end, 90000)
end

local function back_to_private_daemon()
  cfgate.stop(5000)
  local r = run({ bin, "stop" })
  check(r.code == 0, "cfgate stop: %s", r.stderr)
  for k in pairs(shared_env) do
    vim.env[k] = nil
  end
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = base_url }, inline = { debounce_ms = 60 } })
end

test("a session begun here continues in a second Neovim and in `cfgate chat --session`", function()
  fake.reset()
  use_shared_daemon()
  vim.cmd("CfgateChat session=work first question")
  local buf = vim.api.nvim_get_current_buf()
  check(vim.api.nvim_buf_get_name(buf) == "cfgate://chat/work", "chat buffer %s", vim.api.nvim_buf_get_name(buf))
  wait_for("the first answer", function()
    return not chat.busy(buf) and buf_text(buf):find("echo: first question", 1, true)
  end)
  -- The chat window follows the answer from the first turn on.
  check(
    vim.api.nvim_win_get_cursor(0)[1] == vim.api.nvim_buf_line_count(buf),
    "cursor on line %d of %d",
    vim.api.nvim_win_get_cursor(0)[1],
    vim.api.nvim_buf_line_count(buf)
  )

  -- A second Neovim on the same session: the history is loaded into its buffer.
  local out = shared_dir .. "/second.txt"
  local r = run({
    "nvim", "--headless", "--clean", "-n", "-i", "NONE",
    "--cmd", "set rtp^=" .. os.getenv("CFGATE_NVIM_PLUGIN"),
    "-c", "luafile " .. vim.fs.joinpath(os.getenv("CFGATE_NVIM_PLUGIN"), "test", "second_nvim.lua"),
  }, { CFGATE_OUT = out, CFGATE_SESSION = "work", CFGATE_MESSAGE = "second question" })
  local f = assert(io.open(out))
  local second = f:read("*a")
  f:close()
  check(r.code == 0, "second Neovim exited %d: %s", r.code, second)
  check(
    second == "## You\n\nfirst question\n\n## cfgate\n\necho: first question\n\n## You\n\nsecond question\n\n## cfgate\n\necho: second question\n\n## You\n\n",
    "second Neovim's chat buffer:\n%s",
    second
  )

  -- The shell continues it too.
  r = run({ bin, "chat", "--session", "work", "third question" })
  check(r.code == 0, "cfgate chat exited %d: %s", r.code, r.stderr)
  check(r.stdout == "echo: third question\n", "cfgate chat printed %q", r.stdout)

  -- Each turn reached the gateway once, with the whole history before it.
  local reqs = fake.chat_requests()
  check(#reqs == 3, "%d chat requests", #reqs)
  local function contents(req)
    return vim.tbl_map(function(m)
      return m.role .. ": " .. m.content
    end, req.body.messages)
  end
  check(vim.deep_equal(contents(reqs[1]), { "user: first question" }), "first turn sent %s", vim.inspect(contents(reqs[1])))
  check(
    vim.deep_equal(contents(reqs[3]), {
      "user: first question",
      "assistant: echo: first question",
      "user: second question",
      "assistant: echo: second question",
      "user: third question",
    }),
    "last turn sent %s",
    vim.inspect(contents(reqs[3]))
  )

  -- Reopening the session here shows the other clients' turns.
  vim.cmd("wincmd p")
  vim.cmd("CfgateChat session=work")
  wait_for("the reloaded history", function()
    return not chat.busy(buf) and buf_text(buf):find("echo: third question", 1, true)
  end)
  check(
    buf_text(buf) == "## You\n\nfirst question\n\n## cfgate\n\necho: first question\n\n## You\n\nsecond question\n\n## cfgate\n\necho: second question\n\n## You\n\nthird question\n\n## cfgate\n\necho: third question\n\n## You\n\n",
    "reloaded chat buffer:\n%s",
    buf_text(buf)
  )

  -- A fourth turn from here sends only the new message (the daemon adds the rest).
  vim.cmd("CfgateChat fourth question")
  wait_for("the fourth answer", function()
    return not chat.busy(buf) and buf_text(buf):find("echo: fourth question", 1, true)
  end)
  reqs = fake.chat_requests()
  check(#reqs == 4 and #reqs[4].body.messages == 7, "fourth turn sent %s", vim.inspect(reqs[4] and contents(reqs[4])))

  -- :CfgateSessions lists it (and a way to name a new one) and opens the chat on it.
  vim.cmd("only")
  vim.cmd("enew")
  local original = vim.ui.select
  local offered
  vim.ui.select = function(items, o, on_choice)
    offered = vim.tbl_map(o.format_item, items)
    on_choice(items[1])
  end
  vim.cmd("CfgateSessions")
  wait_for("the picker", function()
    return offered
  end)
  vim.ui.select = original
  check(#offered == 2 and offered[1]:find("^work  %(4 turns, ") and offered[2] == "new session...", "offered %s", vim.inspect(offered))
  wait_for("the session's chat", function()
    return vim.api.nvim_get_current_buf() == buf and not chat.busy(buf)
  end)
  check(buf_text(buf):find("echo: fourth question", 1, true), "chat %q", buf_text(buf))
  vim.cmd("only")
end)

test("a daemon that dies mid-answer leaves the error in the chat buffer", function()
  fake.reset()
  fake.script({ hold_open = true, chunks = { "half ", "an answer" } })
  local buf = chat.open("tell me", { new = true })
  wait_for("the first pieces", function()
    return buf_text(buf):find("half an answer", 1, true)
  end)
  H.notes = {}
  local r = run({ bin, "stop" })
  check(r.code == 0, "cfgate stop: %s", r.stderr)
  wait_for("the chat to end", function()
    return not chat.busy(buf)
  end)
  -- The daemon answers the request in flight before it goes (daemon_stopped), so the
  -- chat says why in the daemon's own words.
  local shown = chat.error_text(buf)
  check(shown and shown:find("shared daemon was stopped", 1, true), "error in the chat buffer: %s", tostring(shown))
  check(buf_text(buf):find("half an answer", 1, true), "the partial answer was removed: %q", buf_text(buf))
  check(find_note("the daemon connection ended"), "no notification: %s", notes_text())
  vim.cmd("only")
  back_to_private_daemon()
end)

test("a daemon's reason is its own stderr, never that of one that ended just before", function()
  local stderr = require("cfgate.stderr")
  local exe = "/tmp/cfgate-stderr-test"
  -- As Neovim's RPC client logs a server's stderr chunk.
  vim.lsp.log.error("rpc", exe, "stderr", "cfgate: the shared daemon was stopped\n")
  local started = stderr.offset()
  check(stderr.last_line(exe, started) == nil, "a line from before the start: %s", tostring(stderr.last_line(exe, started)))
  vim.lsp.log.error("rpc", exe, "stderr", "some log line\ncfgate: cannot create /dev/null/cfgate\n")
  local reason = stderr.last_line(exe, started)
  check(reason == "cannot create /dev/null/cfgate", "reason %s", tostring(reason))
end)

test("a relay that cannot reach the shared daemon says why, from its stderr", function()
  H.notes = {}
  cfgate.setup({ cmd = { bin, "serve", "--shared" }, cmd_env = { CFGATE_RUNTIME_DIR = "/dev/null/cfgate" }, settings = {} })
  -- Whatever happens, the tests after this one get a working daemon back.
  local ok, err = pcall(function()
    vim.cmd("CfgateStatus")
    -- This relay's own last words, never those of the relay the test before stopped (it
    -- may have ended in the same second, and the log's times are whole seconds).
    local n = wait_for("the notification", function()
      return find_note("cannot create /dev/null/cfgate")
    end)
    check(n.msg:find("the daemon connection ended (cfgate exited with code 1): cannot create /dev/null/cfgate", 1, true), "no reason: %s", n.msg)
    check(n.msg:find("\nhint: ", 1, true), "no hint: %s", n.msg)
  end)
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = base_url }, inline = { debounce_ms = 60 } })
  if not ok then
    error(err, 0)
  end
end)

test("ghost text appears and is accepted with <M-l>", function()
  fake.reset()
  fake.script({ content = "compute(42)" })
  vim.cmd("enew")
  vim.bo.filetype = "lua"
  local buf = vim.api.nvim_get_current_buf()
  feed("ilocal x = ")
  wait_for("insert mode", function()
    return mode():find("^i") and vim.api.nvim_win_get_cursor(0)[2] == #"local x = "
  end)
  vim.cmd("redraw")
  local column = vim.fn.wincol()
  wait_for("the suggestion", function()
    local sug = inline.suggestion()
    return sug and sug.done and sug.text == "compute(42)"
  end)
  check(mode():find("^i") ~= nil, "not in insert mode: %s", mode())
  -- The cursor is drawn where the user types, not after the ghost text.
  vim.cmd("redraw")
  check(vim.fn.wincol() == column, "cursor drawn at screen column %d with the suggestion, %d without", vim.fn.wincol(), column)
  local marks = vim.api.nvim_buf_get_extmarks(buf, inline.ns, 0, -1, { details = true })
  check(#marks == 1, "%d extmarks", #marks)
  local vt = marks[1][4].virt_text
  check(vt and vt[1][1] == "compute(42)", "virt_text %s", vim.inspect(vt))
  check(marks[1][2] == 0 and marks[1][3] == #"local x = ", "extmark at %d:%d", marks[1][2], marks[1][3])
  local reqs = fake.chat_requests()
  check(#reqs == 1, "%d upstream requests", #reqs)
  check(reqs[1].body.stream == true, "completion not streamed")
  check(buf_text(buf) == "local x = ", "buffer changed before accept: %q", buf_text(buf))

  feed("<M-l>", "mt")
  wait_for("the accepted text", function()
    return vim.api.nvim_buf_get_lines(buf, 0, 1, false)[1] == "local x = compute(42)"
  end)
  check(#vim.api.nvim_buf_get_extmarks(buf, inline.ns, 0, -1, {}) == 0, "ghost text left after accept")
  check(vim.api.nvim_win_get_cursor(0)[2] == #"local x = compute(42)", "cursor not after the insertion")
  feed("<Esc>")
  wait_for("normal mode", function()
    return mode() == "n"
  end)
end)

test("the suggestion's colour does not depend on true colour", function()
  local hl = vim.api.nvim_get_hl(0, { name = "CfgateSuggestion", link = false })
  check(hl.ctermfg ~= nil, "no ctermfg (a 256-colour terminal shows it as typed code): %s", vim.inspect(hl))
  check(hl.fg ~= nil, "no GUI colour: %s", vim.inspect(hl))
  check(hl.ctermfg ~= (vim.api.nvim_get_hl(0, { name = "Normal", link = false }).ctermfg or -1), "same as Normal")
end)

test("accept word and accept line insert exactly that part; the rest stays shown", function()
  fake.reset()
  fake.script({ content = "foo(bar, baz)\nreturn x" })
  vim.cmd("enew")
  vim.bo.filetype = "lua"
  local buf = vim.api.nvim_get_current_buf()
  feed("ilocal v = ")
  wait_for("the suggestion", function()
    local sug = inline.suggestion()
    return sug and sug.done and sug.text == "foo(bar, baz)\nreturn x"
  end)
  local marks = vim.api.nvim_buf_get_extmarks(buf, inline.ns, 0, -1, { details = true })
  check(#marks == 1 and marks[1][4].virt_lines and marks[1][4].virt_lines[1][1][1] == "return x", "second line not a virtual line: %s", vim.inspect(marks))
  feed("<M-Right>", "mt")
  wait_for("the first word", function()
    return buf_text(buf) == "local v = foo"
  end)
  local sug = inline.suggestion()
  check(sug and sug.text == "(bar, baz)\nreturn x", "rest shown: %s", vim.inspect(sug))
  check(vim.api.nvim_win_get_cursor(0)[2] == #"local v = foo", "cursor after the word")
  feed("<M-C-Right>", "mt")
  wait_for("the rest of the line", function()
    return buf_text(buf) == "local v = foo(bar, baz)"
  end)
  feed("<M-C-Right>", "mt")
  wait_for("the next line", function()
    return buf_text(buf) == "local v = foo(bar, baz)\nreturn x"
  end)
  check(inline.suggestion() == nil, "a suggestion is left: %s", vim.inspect(inline.suggestion()))
  check(vim.deep_equal(vim.api.nvim_win_get_cursor(0), { 2, #"return x" }), "cursor %s", vim.inspect(vim.api.nvim_win_get_cursor(0)))
  check(#fake.chat_requests() == 1, "%d upstream requests", #fake.chat_requests())
  feed("<Esc>")
  wait_for("normal mode", function()
    return mode() == "n"
  end)
end)

test("an unreachable gateway while typing: one short line, no prompt, still in insert mode", function()
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = "http://127.0.0.1:9/v1", max_attempts = 1 }, inline = { debounce_ms = 60 } })
  -- The daemon may answer a request sent at once before it applied the notification.
  wait_for("the new settings at the daemon", function()
    local st
    cfgate.status(function(s)
      st = s
    end)
    wait_for("status", function()
      return st
    end)
    return st.base_url == "http://127.0.0.1:9/v1"
  end)
  vim.cmd("messages clear")
  vim.cmd("enew")
  local buf = vim.api.nvim_get_current_buf()
  feed("ilocal z = ")
  local shown = wait_for("the error line", function()
    return inline.last_error()
  end)
  check(shown:find("^cfgate: cannot connect") and not shown:find("\n"), "error line %q", shown)
  -- Shown where the suggestion would be ("-- INSERT --" takes the message area).
  local function eol_text()
    for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, inline.ns, 0, -1, { details = true })) do
      if m[4].virt_text_pos == "eol" then
        return m[4].virt_text[1][1]
      end
    end
    return nil
  end
  check((eol_text() or ""):find("cfgate: cannot connect", 1, true), "not shown at the line: %s", tostring(eol_text()))
  -- Typing on: the same error is not shown again.
  feed("a")
  wait_for("the text", function()
    return buf_text(buf) == "local z = a"
  end)
  wait_for("the second request to fail", function()
    return not inline.busy() and inline.suggestion() == nil
  end)
  check(mode():find("^i") ~= nil, "left insert mode: %s", mode())
  check(eol_text() == nil, "the error stays after typing: %s", tostring(eol_text()))
  check(#H.notes == 0, "notifications while typing: %s", notes_text())
  local messages = vim.api.nvim_exec2("messages", { output = true }).output
  local _, count = messages:gsub("cfgate: ", "")
  check(count == 1, "the error was shown %d times: %q", count, messages)
  check(not messages:find("hint:", 1, true), "the hint was shown while typing: %q", messages)
  local line = messages:match("cfgate: [^\n]*")
  check(vim.fn.strdisplaywidth(line) < vim.o.columns - 12, "error line as wide as the screen (a prompt): %q", line)
  feed("<Esc>")
  wait_for("normal mode", function()
    return mode() == "n"
  end)
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = base_url }, inline = { debounce_ms = 60 } })
end)

test("the completion context follows the daemon's completion_context_chars, split as the daemon splits it", function()
  -- The daemon's own value (its config file here), read from cfgate/status at start.
  local file = vim.fn.tempname()
  vim.fn.writefile({ "completion_context_chars = 40" }, file)
  cfgate.stop(5000)
  vim.env.CFGATE_CONFIG = file
  cfgate.start()
  wait_for("the budget from cfgate/status", function()
    return require("cfgate.client").context_chars() == 40
  end)
  vim.env.CFGATE_CONFIG = nil
  os.remove(file)
  vim.cmd("enew")
  local buf = vim.api.nvim_get_current_buf()
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { "first line here", "second line é", "third x", "after one", "after two", "after three" })
  local prefix, suffix = inline.context(buf, 2, #"third ")
  check(prefix == "second line é\nthird ", "prefix %q", prefix)
  check(suffix == "x\n", "suffix %q", suffix)
  -- A short side leaves its share to the other.
  local p2, s2 = inline.split_context(string.rep("a", 50), "zz", 40)
  check(vim.fn.strchars(p2) == 38 and s2 == "zz", "short suffix: %q %q", p2, s2)
  -- This Neovim's own setting wins, as it does in the daemon.
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = base_url, completion_context_chars = 100 }, inline = { debounce_ms = 60 } })
  check(require("cfgate.client").context_chars() == 100, "own setting not used: %d", require("cfgate.client").context_chars())
  cfgate.stop(5000)
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = base_url }, inline = { debounce_ms = 60 } })
  cfgate.start()
  wait_for("the default budget", function()
    return require("cfgate.client").context_chars() == 8000
  end)
  vim.cmd("bwipeout!")
end)

test("typing cancels the in-flight completion (the upstream stream is dropped)", function()
  local dropped_before = fake.stats().streams_dropped
  fake.reset()
  fake.script({ hold_open = true, chunks = { "still_", "streaming" } })
  local buf = vim.api.nvim_get_current_buf()
  feed("ofoo(")
  wait_for("the request at the fake", function()
    return #fake.chat_requests() >= 1
  end)
  wait_for("an in-flight completion", function()
    return inline.busy()
  end)
  feed("x")
  wait_for("the fake to see the stream dropped", function()
    return fake.stats().streams_dropped >= dropped_before + 1
  end)
  wait_for("the typed key", function()
    return vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1] == "foo(x"
  end)
  local sug = inline.suggestion()
  check(not (sug and sug.text:find("still_", 1, true)), "the old ghost text is still shown")
  feed("<Esc>")
  wait_for("normal mode", function()
    return mode() == "n"
  end)
  check(not inline.busy(), "a completion is still in flight after <Esc>")
end)

test("an upstream error shows the message and the hint, not JSON", function()
  fake.reset()
  H.notes = {}
  cfgate.set_model("@cf/google/gemini-2.0-flash")
  local st
  cfgate.status(function(s)
    st = s
  end)
  wait_for("status", function()
    return st
  end)
  check(st.model == "@cf/google/gemini-2.0-flash", "model not changed: %s", tostring(st.model))
  local buf = chat.open("hi", { new = true })
  local n = wait_for("the error notification", function()
    return find_note("hint:")
  end)
  check(n.msg:find("^cfgate: ") ~= nil, "not prefixed: %s", n.msg)
  check(n.msg:find("\nhint: ", 1, true) ~= nil, "hint not on its own line: %s", n.msg)
  check(n.msg:find("google-ai-studio/", 1, true) ~= nil, "hint does not mention google-ai-studio/: %s", n.msg)
  check(n.msg:find("5007", 1, true) ~= nil, "message does not carry the upstream code: %s", n.msg)
  check(not n.msg:find('"code"', 1, true) and not n.msg:find("{", 1, true), "raw JSON shown: %s", n.msg)
  check(n.level == vim.log.levels.ERROR, "level %s", tostring(n.level))
  wait_for("the chat to settle", function()
    return not chat.busy(buf)
  end)
  local text = buf_text(buf)
  check(not text:find("## cfgate", 1, true), "failed turn left in the buffer: %q", text)
  check(text:find("hi", 1, true), "the user's message was lost: %q", text)
  cfgate.set_model(default_model)
  vim.cmd("only")
end)

test(":'<,'>CfgateAsk streams the answer into a float", function()
  fake.reset()
  vim.cmd("enew")
  vim.api.nvim_buf_set_lines(0, 0, -1, false, { "local a = 1", "local b = 2", "return a + b" })
  vim.bo.filetype = "lua"
  vim.cmd("1,2CfgateAsk explain this")
  local fbuf = vim.api.nvim_get_current_buf()
  check(vim.api.nvim_win_get_config(0).relative ~= "", "the answer is not in a float")
  wait_for("the answer", function()
    return vim.b[fbuf].cfgate_done
  end)
  local text = buf_text(fbuf)
  check(text:find("echo: explain this", 1, true), "float text: %q", text)
  local body = fake.chat_requests()[1].body
  local content = body.messages[#body.messages].content
  check(content:find("```lua\nlocal a = 1\nlocal b = 2\n```", 1, true), "selection not sent: %q", content)
  check(not content:find("return a + b", 1, true), "more than the selection sent")
  feed("q", "mt")
  wait_for("the float to close", function()
    return vim.api.nvim_win_get_config(0).relative == ""
  end)
end)

test(":CfgateModels offers the gateway's models from cfgate/models, the current one first", function()
  fake.reset()
  H.notes = {}
  local original = vim.ui.select
  local offered, shown
  vim.ui.select = function(items, opts, on_choice)
    offered = items
    shown = vim.tbl_map(opts.format_item, items)
    for _, item in ipairs(items) do
      if item.id == "openai/gpt-5-mini" then
        on_choice(item)
      end
    end
  end
  vim.cmd("CfgateModels")
  wait_for("the picker", function()
    return offered
  end)
  vim.ui.select = original
  -- The fake's /compat/models list, asked for by the daemon; the default model (listed as
  -- workers-ai/@cf/...) first and once.
  local listed = vim.tbl_filter(function(r)
    return r.method == "GET" and r.path:find("/compat/models", 1, true) ~= nil
  end, fake.requests())
  check(#listed == 1, "the daemon did not fetch the gateway's list: %s", vim.inspect(fake.requests()))
  local ids = vim.tbl_map(function(i)
    return i.id
  end, offered)
  check(
    vim.deep_equal(ids, {
      "workers-ai/" .. default_model,
      "workers-ai/@cf/google/gemma-4-26b-a4b-it",
      "openai/gpt-5-mini",
      "google-ai-studio/gemini-2.5-flash",
      "anthropic/claude-sonnet-4-5",
    }),
    "offered %s",
    vim.inspect(ids)
  )
  check(shown[1]:find("(current)", 1, true), "the first is not marked current: %s", shown[1])
  check(
    shown[3] == "openai/gpt-5-mini  — openai, $0.25 in / $2 out per M tokens",
    "details of a listed model: %q",
    shown[3]
  )
  check(shown[5] == "anthropic/claude-sonnet-4-5  — anthropic", "a model without a price: %q", shown[5])
  local st
  cfgate.status(function(s)
    st = s
  end)
  wait_for("status", function()
    return st
  end)
  check(st.model == "openai/gpt-5-mini", "model %s, expected openai/gpt-5-mini", tostring(st.model))
  check(find_note("model openai/gpt-5-mini"), "no notification of the new model: %s", notes_text())
  -- A model the gateway does not list is still offered first while it is the current one.
  cfgate.set_model("dynamic/support")
  offered = nil
  vim.ui.select = function(items, opts)
    offered = items
    shown = vim.tbl_map(opts.format_item, items)
  end
  vim.cmd("CfgateModels")
  wait_for("the picker", function()
    return offered
  end)
  vim.ui.select = original
  check(shown[1] == "dynamic/support  (current)" and #offered == 6, "offered %s", vim.inspect(shown))
  -- The command line completes the listed ids.
  local completed = vim.fn.getcompletion("CfgateModels openai/", "cmdline")
  check(vim.deep_equal(completed, { "openai/gpt-5-mini" }), "completion %s", vim.inspect(completed))
  cfgate.set_model(default_model)
end)

test(":CfgateModels shows why the list cannot be had (message and hint), and no picker", function()
  local unreachable = "http://127.0.0.1:9/v1"
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = unreachable, max_attempts = 1 }, inline = { debounce_ms = 60 } })
  wait_for("the new settings at the daemon", function()
    local st
    cfgate.status(function(s)
      st = s
    end)
    wait_for("status", function()
      return st
    end)
    return st.base_url == unreachable
  end)
  H.notes = {}
  local original = vim.ui.select
  local offered
  vim.ui.select = function(items)
    offered = items
  end
  vim.cmd("CfgateModels")
  local n = wait_for("the error notification", function()
    return find_note("cfgate: cannot connect")
  end)
  vim.ui.select = original
  check(n.msg:find("^cfgate: cannot connect to the gateway at " .. unreachable .. "/models"), "message: %s", n.msg)
  check(n.msg:find("\nhint: check the network and base_url"), "no hint on its own line: %s", n.msg)
  check(n.level == vim.log.levels.ERROR, "level %s", tostring(n.level))
  check(offered == nil, "a picker was shown: %s", vim.inspect(offered))
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = base_url }, inline = { debounce_ms = 60 } })
end)

test("a 429: the statusline says rate limited, the chat shows the wait (not as answer text), then the answer", function()
  fake.reset()
  -- The test before set max_attempts = 1 on this same daemon; setup() replaces the
  -- settings, so it is back to its default and the chat retries after the 429 (sent as
  -- null in didChangeConfiguration; merged, it would stay 1 and the chat would fail).
  cfgate.setup({ cmd = { bin, "serve" }, settings = { base_url = base_url }, inline = { debounce_ms = 60 } })
  wait_for("ready", function()
    return cfgate.statusline() == "cfgate: ready"
  end)
  -- Every state the statusline showed, in order (the autocommand fires on each change).
  local shown = {}
  local au = vim.api.nvim_create_autocmd("User", {
    pattern = "CfgateStatus",
    callback = function()
      table.insert(shown, { text = cfgate.statusline(), hl = cfgate.statusline_hl() })
    end,
  })
  fake.script({
    status = 429,
    body = '{"success":false,"errors":[{"code":2003,"message":"Rate limited"}]}',
    headers = { { "retry-after", "3" } },
  })
  local buf = chat.open("wait for it", { new = true })
  wait_for("the rate-limited statusline", function()
    return cfgate.statusline() == "cfgate: rate limited"
  end)
  check(
    cfgate.statusline_hl() == "%#CfgateStatusRateLimited#cfgate: rate limited%*",
    "statusline_hl %q",
    cfgate.statusline_hl()
  )
  local note = wait_for("the waiting note in the chat", function()
    return chat.waiting_text(buf)
  end)
  check(note:find("^cfgate: rate limited: waiting %d+ s$"), "waiting note %q", note)
  check(not buf_text(buf):find("rate limited", 1, true), "the note is in the buffer text: %s", buf_text(buf))
  H.notes = {}
  vim.cmd("CfgateStatus")
  local n = wait_for(":CfgateStatus", function()
    return find_note("cfgate ")
  end)
  check(n.msg:find("\nstate: rate limited (", 1, true), ":CfgateStatus has no rate-limited state: %s", n.msg)
  check(n.msg:find("rate limited: cooling down", 1, true), ":CfgateStatus has no cool-down: %s", n.msg)
  check(n.level == vim.log.levels.WARN, "level %s", tostring(n.level))
  wait_for("the answer", function()
    return not chat.busy(buf) and buf_text(buf):find("echo: wait for it", 1, true)
  end)
  vim.api.nvim_del_autocmd(au)
  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  check(
    vim.deep_equal(lines, { "## You", "", "wait for it", "", "## cfgate", "", "echo: wait for it", "", "## You", "", "" }),
    "chat buffer: %s",
    vim.inspect(lines)
  )
  check(chat.waiting_text(buf) == nil, "the waiting note stayed: %s", tostring(chat.waiting_text(buf)))
  wait_for("ready again", function()
    return cfgate.statusline() == "cfgate: ready"
  end)
  check(cfgate.statusline_hl() == "cfgate: ready", "statusline_hl after %q", cfgate.statusline_hl())
  -- The rate-limited state came and went: something else (busy/ready) followed it.
  local after
  for i, s in ipairs(shown) do
    if s.text == "cfgate: rate limited" then
      after = shown[i + 1]
    end
  end
  check(after and after.text ~= "cfgate: rate limited", "states shown: %s", vim.inspect(shown))
  check(#fake.chat_requests() == 2, "%d chat requests (the 429, then the answer)", #fake.chat_requests())
  vim.cmd("silent! only")
end)

test("the statusline follows the daemon's state (busy → ready); :CfgateStatus lists clients and sessions", function()
  fake.reset()
  check(cfgate.statusline() == "cfgate: ready", "statusline %q", cfgate.statusline())
  fake.script({ hold_open = true, chunks = { "wait" } })
  local buf = chat.open("hold on", { new = true })
  wait_for("busy", function()
    return cfgate.statusline() == "cfgate: busy"
  end)
  chat.cancel(buf)
  wait_for("ready", function()
    return cfgate.statusline() == "cfgate: ready"
  end)
  vim.cmd("only")
  H.notes = {}
  vim.cmd("CfgateStatus")
  local n = wait_for("the status", function()
    return find_note("clients (")
  end)
  check(n.msg:find("clients (1): Neovim " .. tostring(vim.version()), 1, true), "clients: %s", n.msg)
  check(n.msg:find("\nsessions: ", 1, true), "sessions: %s", n.msg)
  cfgate.stop(5000)
  check(cfgate.statusline() == "", "statusline with no daemon %q", cfgate.statusline())
end)

test("the daemon's code actions are offered on a visual selection (gra) and fix applies its edit", function()
  fake.reset()
  local path = vim.fn.tempname() .. ".lua"
  vim.fn.writefile({ "local a = 1 +", "return a" }, path)
  vim.cmd.edit(path)
  local buf = vim.api.nvim_get_current_buf()
  wait_for("the daemon attached to the buffer", function()
    return #vim.lsp.get_clients({ bufnr = buf, name = "cfgate" }) == 1
  end)
  local original = vim.ui.select
  local offered
  vim.ui.select = function(items, o, on_choice)
    offered = vim.tbl_map(function(item)
      return o.format_item(item)
    end, items)
    on_choice(nil)
  end
  feed("ggV", "nt")
  wait_for("visual mode", function()
    return mode() == "V"
  end)
  vim.lsp.buf.code_action()
  wait_for("the code action menu", function()
    return offered
  end)
  vim.ui.select = original
  local text = table.concat(offered, "\n")
  for _, title in ipairs({ "cfgate: explain", "cfgate: fix", "cfgate: add docs" }) do
    check(text:find(title, 1, true), "%s not offered: %s", title, text)
  end
  fake.script({ content = "local a = 1 + 2\n" })
  vim.lsp.buf.code_action({
    apply = true,
    filter = function(a)
      return a.title == "cfgate: fix"
    end,
  })
  wait_for("the fixed line", function()
    return vim.api.nvim_buf_get_lines(buf, 0, 1, false)[1] == "local a = 1 + 2"
  end)
  check(buf_text(buf) == "local a = 1 + 2\nreturn a", "buffer %q", buf_text(buf))
  feed("<Esc>")
  vim.cmd("bwipeout!")
  os.remove(path)
end)

test(":checkhealth cfgate reports the daemon and complete credentials", function()
  vim.cmd("silent checkhealth cfgate")
  local text = buf_text(0)
  check(text:find("credentials complete", 1, true), "health: %s", text)
  check(text:find("cfgate 0.", 1, true), "no version in health: %s", text)
  check(not text:find("ERROR", 1, true), "health has errors: %s", text)
  vim.cmd("tabclose")
end)

H.run(function()
  -- Stop the daemon the way Neovim does at exit, and wait for the process to end.
  if not require("cfgate").stop(5000) then
    return { "the daemon did not stop within 5 s" }
  end
end)
