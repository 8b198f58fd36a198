-- cfgate as a plain language server, in Neovim with no cfgate plugin: only the built-in
-- client (vim.lsp.start), as a user of any LSP editor would set it up. Keys are typed for
-- real, so Neovim's own incremental sync sends the didChange notifications; the checks are
-- on what the user sees (the buffer, the menu, the messages) and on what reached the model.

local here = vim.fs.dirname(debug.getinfo(1, "S").source:sub(2))
local H = dofile(vim.fs.joinpath(here, "..", "..", "nvim", "test", "harness.lua"))
local fake, test, wait_for, check, feed, mode = H.fake, H.test, H.wait_for, H.check, H.feed, H.mode

local workdir = assert(os.getenv("CFGATE_TEST_WORKDIR"), "CFGATE_TEST_WORKDIR is not set (use test/run.sh)")
local base_url = H.url .. "/v1/acc/gw/compat"

-- Typed text must land as typed: no indent rules, no completion popups of Neovim's own.
vim.o.autoindent = false
vim.o.complete = ""
vim.o.shortmess = vim.o.shortmess .. "c"

--- Starts (or reuses, by name) a client of `cfgate serve` for the current buffer, and
--- waits until it is initialized.
local function start_client(name, capabilities)
  local id = assert(vim.lsp.start({
    name = name,
    cmd = { H.bin, "serve" },
    root_dir = workdir,
    init_options = { base_url = base_url },
    capabilities = capabilities,
  }))
  local client = assert(vim.lsp.get_client_by_id(id))
  wait_for("the client to initialize", function()
    return client.initialized
  end)
  return client
end

--- Sends a request from the current buffer and waits for its answer. The buffer is named
--- by number: Neovim sends the buffer's pending didChange first only then.
local function request(client, method, params)
  local done, err, result
  client:request(method, params, function(e, r)
    done, err, result = true, e, r
  end, vim.api.nvim_get_current_buf())
  wait_for(method, function()
    return done
  end)
  check(err == nil, "%s failed: %s", method, vim.inspect(err))
  return result
end

local function lines(buf)
  return vim.api.nvim_buf_get_lines(buf or 0, 0, -1, false)
end

--- The prefix and suffix the model was shown, read back out of the completion prompt:
--- the user message holds "```\n<prefix><CURSOR><suffix>\n```".
local function sent_context(req)
  local user = req.body.messages[2].content
  local open = assert(user:find("```\n", 1, true), "no opening fence in: " .. user)
  local cursor = assert(user:find("<CURSOR>", open, true), "no <CURSOR> in: " .. user)
  local close = assert(user:find("\n```\nThe text to insert at <CURSOR>:", cursor, true), "no closing fence in: " .. user)
  return user:sub(open + 4, cursor - 1), user:sub(cursor + #"<CURSOR>", close - 1)
end

--- The buffer's text before and after the cursor, as Neovim holds it. The document ends
--- with the last line's line break (Neovim writes and syncs it: 'fixendofline').
local function around_cursor()
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local before = table.concat(vim.api.nvim_buf_get_text(0, 0, 0, row - 1, col, {}), "\n")
  local after = table.concat(vim.api.nvim_buf_get_text(0, row - 1, col, -1, -1, {}), "\n")
  return before, after .. "\n"
end

local function wait_mode(m)
  wait_for("mode " .. m, function()
    return mode() == m
  end)
end

local function escape()
  feed("<Esc>")
  wait_mode("n")
end

test("no cfgate plugin is loaded: only Neovim's own LSP client", function()
  check(#vim.api.nvim_get_runtime_file("lua/cfgate/init.lua", true) == 0, "the cfgate plugin is on 'runtimepath'")
  check(vim.fn.exists(":CfgateChat") == 0, ":CfgateChat exists")
end)

--- Types text with keys (multi-byte characters, several lines, <BS> over characters and
--- over a line break, arrow keys), asks for an inline completion at the cursor and inserts
--- it where its range says.
local function typing_and_inline_completion(name, capabilities, encoding)
  fake.reset()
  vim.cmd.edit(vim.fs.joinpath(workdir, "typed-" .. encoding .. ".txt"))
  local buf = vim.api.nvim_get_current_buf()
  local client = start_client(name, capabilities)
  check(client.offset_encoding == encoding, "negotiated %s, expected %s", client.offset_encoding, encoding)
  check(
    vim.lsp.buf_is_attached(buf, client.id) and client.server_capabilities.textDocumentSync.change == 2,
    "not attached with incremental sync: %s",
    vim.inspect(client.server_capabilities.textDocumentSync)
  )

  feed("iGrüße, 😀 world<CR>second lin<BS><BS>ine é😀😀<BS>!<CR>third<BS><BS><BS><BS><BS><BS> + tail<CR>fn(é) {<CR>}")
  feed("<Up><End><Left><Left><Left>")
  local typed = { "Grüße, 😀 world", "second line é😀! + tail", "fn(é) {", "}" }
  wait_for("the typed text", function()
    return vim.deep_equal(lines(buf), typed) and vim.api.nvim_win_get_cursor(0)[2] == #"fn(é"
  end)
  check(mode() == "i", "not in insert mode: %s", mode())

  fake.script({ content = "a, ü" })
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 1 }
  local list = request(client, "textDocument/inlineCompletion", params)
  local reqs = fake.chat_requests()
  check(#reqs == 1, "%d requests reached the model", #reqs)
  local prefix, suffix = sent_context(reqs[1])
  local before, after = around_cursor()
  check(prefix == "Grüße, 😀 world\nsecond line é😀! + tail\nfn(é", "prefix sent: %q", prefix)
  check(prefix == before, "prefix sent %q, buffer has %q", prefix, before)
  check(suffix == after, "suffix sent %q, buffer has %q", suffix, after)

  check(list and #list.items == 1, "inline completion answer: %s", vim.inspect(list))
  local item = list.items[1]
  check(item.insertText == "a, ü", "insertText %q", item.insertText)
  check(vim.deep_equal(item.range, { start = params.position, ["end"] = params.position }), "range %s at cursor %s", vim.inspect(item.range), vim.inspect(params.position))
  vim.lsp.util.apply_text_edits({ { range = item.range, newText = item.insertText } }, buf, client.offset_encoding)
  check(vim.deep_equal(lines(buf), { typed[1], typed[2], "fn(éa, ü) {", "}" }), "after inserting: %s", vim.inspect(lines(buf)))

  -- The edit was synced too: the next request sees it.
  escape()
  feed("Go😀 <BS>ok")
  wait_for("the new line", function()
    return lines(buf)[5] == "😀ok"
  end)
  fake.script({ content = "!" })
  params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 1 }
  list = request(client, "textDocument/inlineCompletion", params)
  reqs = fake.chat_requests()
  check(#reqs == 2, "%d requests reached the model", #reqs)
  prefix, suffix = sent_context(reqs[2])
  before, after = around_cursor()
  check(prefix == before and suffix == after, "sent %q<CURSOR>%q, buffer has %q<CURSOR>%q", prefix, suffix, before, after)
  check(prefix == "Grüße, 😀 world\nsecond line é😀! + tail\nfn(éa, ü) {\n}\n😀ok", "prefix sent: %q", prefix)
  vim.lsp.util.apply_text_edits({ { range = list.items[1].range, newText = list.items[1].insertText } }, buf, client.offset_encoding)
  check(lines(buf)[5] == "😀ok!", "line 5 after inserting: %q", lines(buf)[5])
  escape()
end

test("typed text syncs and the inline completion lands at the cursor (default encodings: utf-8)", function()
  typing_and_inline_completion("cfgate", nil, "utf-8")
end)

test("typed text syncs and the inline completion lands at the cursor (utf-16 only)", function()
  typing_and_inline_completion("cfgate-utf16", { general = { positionEncodings = { "utf-16" } } }, "utf-16")
end)

test("textDocument/completion: the item's edit completes the word before the cursor", function()
  fake.reset()
  vim.cmd.edit(vim.fs.joinpath(workdir, "complete.txt"))
  local buf = vim.api.nvim_get_current_buf()
  local client = start_client("cfgate")
  feed("ilet café = 1<CR>local resü")
  wait_for("the typed text", function()
    return lines(buf)[2] == "local resü"
  end)
  fake.script({ content = "lt = café + 1" })
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 1 }
  local answer = request(client, "textDocument/completion", params)
  local items = answer and (answer.items or answer)
  check(items and #items == 1, "completion answer: %s", vim.inspect(answer))
  local edit = items[1].textEdit
  check(edit ~= nil, "no textEdit: %s", vim.inspect(items[1]))
  vim.lsp.util.apply_text_edits({ edit }, buf, client.offset_encoding)
  check(vim.deep_equal(lines(buf), { "let café = 1", "local resült = café + 1" }), "buffer: %s", vim.inspect(lines(buf)))
  local prefix = sent_context(fake.chat_requests()[1])
  check(prefix == "let café = 1\nlocal resü", "prefix sent: %q", prefix)
  escape()
end)

-- Neovim 0.11 inserts only the first word of a plain-text item's textEdit.newText
-- (runtime/lua/vim/lsp/completion.lua, get_completion_word: `word:match('^(%S*)')`), so
-- the menu offers "résult", not the whole suggestion.
test("<C-x><C-o> (Neovim's LSP omnifunc) offers the suggestion in the menu and <C-y> takes it", function()
  fake.reset()
  vim.cmd.edit(vim.fs.joinpath(workdir, "omni.txt"))
  local buf = vim.api.nvim_get_current_buf()
  start_client("cfgate")
  check(vim.bo[buf].omnifunc == "v:lua.vim.lsp.omnifunc", "omnifunc %q", vim.bo[buf].omnifunc)
  fake.script({ content = "lt = 1 + 1" })
  -- A menu even for one match (Neovim would insert a single match without one).
  vim.o.completeopt = "menuone"
  feed("iif ok { local résu<C-x><C-o>")
  local shown = wait_for("the completion menu", function()
    return vim.fn.pumvisible() == 1 and vim.fn.complete_info({ "items" }).items
  end)
  vim.o.completeopt = vim.api.nvim_get_option_info2("completeopt", {}).default
  local words = vim.tbl_map(function(item)
    return item.word
  end, shown)
  check(vim.deep_equal(words, { "résult = 1 + 1" }), "the menu offers %s", vim.inspect(words))
  feed("<C-y> }")
  wait_for("the completed line", function()
    return lines(buf)[1] == "if ok { local résult = 1 + 1 }"
  end)
  escape()
end)

-- Code actions ------------------------------------------------------------------------

local function only(title)
  return function()
    vim.lsp.buf.code_action({
      apply = true,
      filter = function(a)
        return a.title == title
      end,
    })
  end
end
vim.keymap.set("x", "<F5>", only("cfgate: fix"))
vim.keymap.set("x", "<F6>", only("cfgate: explain"))
vim.keymap.set("x", "<F7>", vim.lsp.buf.code_action)

local source = { "def add(a, b):", "    return a - b", "", "print(add(1, 2))" }

local function open_source(file)
  local path = vim.fs.joinpath(workdir, file)
  vim.fn.writefile(source, path)
  vim.cmd.edit(path)
  local client = start_client("cfgate")
  check(vim.deep_equal(lines(), source), "file not loaded: %s", vim.inspect(lines()))
  return vim.api.nvim_get_current_buf(), client
end

test("code actions on a selection: the menu offers explain, fix and add docs", function()
  fake.reset()
  open_source("menu.py")
  local original = vim.ui.select
  local offered
  vim.ui.select = function(items, opts, on_choice)
    offered = vim.tbl_map(function(item)
      return opts.format_item(item)
    end, items)
    on_choice(nil)
  end
  feed("ggVj<F7>", "mt")
  wait_for("the code action menu", function()
    return offered
  end)
  vim.ui.select = original
  check(vim.deep_equal(offered, { "cfgate: explain", "cfgate: fix", "cfgate: add docs" }), "offered: %s", vim.inspect(offered))
  escape()
  -- Nothing selected: nothing offered, and nothing asked of the model.
  local got
  vim.ui.select = function(items)
    got = items
  end
  vim.lsp.buf.code_action()
  vim.ui.select = original
  wait_for("the code action answer", function()
    return H.find_note("No code actions available") or got
  end)
  check(got == nil, "offered without a selection: %s", vim.inspect(got))
  check(#fake.chat_requests() == 0, "the model was asked")
end)

test("code action 'cfgate: fix' replaces the selection with the fixed code", function()
  fake.reset()
  local buf = open_source("fix.py")
  fake.script({ content = "```python\ndef add(a, b):\n    return a + b\n```" })
  feed("ggVj<F5>", "mt")
  wait_for("the fixed code in the buffer", function()
    return lines(buf)[2] ~= source[2]
  end)
  check(vim.deep_equal(lines(buf), { "def add(a, b):", "    return a + b", "", "print(add(1, 2))" }), "buffer: %s", vim.inspect(lines(buf)))
  local reqs = fake.chat_requests()
  check(#reqs == 1, "%d requests reached the model", #reqs)
  local user = reqs[1].body.messages[#reqs[1].body.messages].content
  check(user:find("```\ndef add(a, b):\n    return a - b\n```", 1, true), "selection sent: %q", user)
  check(vim.bo[buf].modified, "the buffer is not marked modified")
  if mode() ~= "n" then
    escape()
  end
  vim.cmd("silent write")
end)

test("code action 'cfgate: explain' shows the explanation as a message", function()
  fake.reset()
  local buf = open_source("explain.py")
  fake.script({ content = "It adds a and b." })
  vim.cmd("messages clear")
  feed("ggVj<F6>", "mt")
  local messages = wait_for("the message", function()
    local m = vim.api.nvim_exec2("messages", { output = true }).output
    return m:find("cfgate: It adds a and b.", 1, true) and m
  end)
  check(vim.deep_equal(lines(buf), source), "explain changed the buffer: %s", vim.inspect(lines(buf)))
  check(#fake.chat_requests() == 1, "%d requests reached the model", #fake.chat_requests())
  check(not messages:find("Error", 1, true), "messages: %s", messages)
  vim.cmd("messages clear")
  if mode() ~= "n" then
    escape()
  end
end)

-- Neovim quits with its clients running, as a user would; run.sh checks that no daemon
-- is left behind.
H.run()
