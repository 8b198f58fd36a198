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

test("ghost text appears and is accepted with <M-l>", function()
  fake.reset()
  fake.script({ content = "compute(42)" })
  vim.cmd("enew")
  vim.bo.filetype = "lua"
  local buf = vim.api.nvim_get_current_buf()
  feed("ilocal x = ")
  wait_for("the suggestion", function()
    local sug = inline.suggestion()
    return sug and sug.done and sug.text == "compute(42)"
  end)
  check(mode():find("^i") ~= nil, "not in insert mode: %s", mode())
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

test(":CfgateModels picks a model through vim.ui.select", function()
  local original = vim.ui.select
  local offered
  vim.ui.select = function(items, _, on_choice)
    offered = items
    on_choice(items[2])
  end
  vim.cmd("CfgateModels")
  wait_for("the picker", function()
    return offered
  end)
  vim.ui.select = original
  check(offered[1] == default_model, "current model not first: %s", vim.inspect(offered))
  local st
  cfgate.status(function(s)
    st = s
  end)
  wait_for("status", function()
    return st
  end)
  check(st.model == offered[2], "model %s, expected %s", tostring(st.model), offered[2])
  check(find_note("model " .. offered[2]), "no notification of the new model: %s", notes_text())
  cfgate.set_model(default_model)
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
