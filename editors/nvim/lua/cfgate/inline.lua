--- Inline suggestions as ghost text: `cfgate/complete` after a pause in typing, streamed
--- into an extmark (inline virtual text + virtual lines), cancelled by any edit.
local config = require("cfgate.config")
local client = require("cfgate.client")

local M = {}

local ns = vim.api.nvim_create_namespace("cfgate_inline")
M.ns = ns

local augroup = "cfgate_inline"

local s = {
  timer = nil, -- debounce timer
  req = nil, -- in-flight cfgate.Request
  sug = nil, -- { buf, row, col, text, done }
  skip = nil, -- { buf, tick }: the change our own accept made
  disabled = false, -- toggled off with :CfgateInlineToggle
  last_error = nil, -- the error line shown, so one error is not repeated on every keystroke
  error_buf = nil, -- the buffer showing that error as virtual text
}

local function opts()
  return config.get().inline
end

local function stop_timer()
  if s.timer then
    s.timer:stop()
  end
end

local function clear_marks(buf)
  if buf and vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  end
end

--- Cancels the in-flight request (`$/cancelRequest`) and removes the ghost text.
function M.cancel()
  stop_timer()
  if s.req then
    s.req:cancel()
    s.req = nil
  end
  if s.sug then
    clear_marks(s.sug.buf)
    s.sug = nil
  end
  if s.error_buf then
    clear_marks(s.error_buf)
    s.error_buf = nil
  end
end

--- Whether inline suggestions are on for a buffer.
function M.enabled_for(buf)
  local o = opts()
  if s.disabled or not o.enabled or vim.b[buf].cfgate_inline == false then
    return false
  end
  if vim.bo[buf].buftype ~= "" or not vim.bo[buf].modifiable then
    return false
  end
  return o.filetypes[vim.bo[buf].filetype] ~= false
end

--- prefix/suffix around (row, col), within the daemon's `completion_context_chars`.
function M.context(buf, row, col)
  return require("cfgate.context").around(buf, row, col, client.context_chars())
end

--- The daemon's split of a context budget (see cfgate.context).
function M.split_context(before, after, total)
  return require("cfgate.context").split(before, after, total)
end

local function display(text, buf)
  local ts = vim.bo[buf].tabstop
  return (text:gsub("\t", string.rep(" ", ts > 0 and ts or 8)))
end

local function render()
  local sug = s.sug
  if not sug or not vim.api.nvim_buf_is_valid(sug.buf) then
    return
  end
  clear_marks(sug.buf)
  if sug.text == "" then
    return
  end
  local line = vim.api.nvim_buf_get_lines(sug.buf, sug.row, sug.row + 1, false)[1]
  if not line then
    return
  end
  local lines = vim.split(sug.text, "\n", { plain = true })
  -- right_gravity: the cursor is drawn before inline virtual text only when the mark
  -- sits to the right of it (with false it is drawn after the whole suggestion). Typing
  -- at the mark removes the suggestion anyway, so where the mark would move is moot.
  local mark = { hl_mode = "combine", right_gravity = true }
  if lines[1] ~= "" then
    mark.virt_text = { { display(lines[1], sug.buf), "CfgateSuggestion" } }
    mark.virt_text_pos = "inline"
  end
  if #lines > 1 then
    mark.virt_lines = {}
    for i = 2, #lines do
      table.insert(mark.virt_lines, { { display(lines[i], sug.buf), "CfgateSuggestion" } })
    end
  end
  vim.api.nvim_buf_set_extmark(sug.buf, ns, sug.row, math.min(sug.col, #line), mark)
end

--- An inline-suggestion failure, while the user types: one short line, once per
--- distinct error until it changes or a suggestion succeeds, never a prompt that takes
--- the next key. It is shown where the suggestion would have been (end-of-line virtual
--- text, gone with the next key; the message area is taken by "-- INSERT --" in insert
--- mode) and kept in :messages. Chat and ask show the whole error with its hint.
local function report_error(err, sug)
  if type(err) == "table" and err.code == client.CANCELLED then
    return
  end
  local text = client.format_error(err):gsub("\n.*", "")
  if s.last_error == text then
    return
  end
  s.last_error = text
  -- Shorter than the screen: a longer line would ask to press ENTER.
  local room = math.max(20, vim.o.columns - 15)
  if vim.fn.strdisplaywidth(text) > room then
    text = vim.fn.strcharpart(text, 0, room - 1) .. "…"
  end
  vim.api.nvim_echo({ { text, "WarningMsg" } }, true, {})
  if sug and vim.api.nvim_buf_is_valid(sug.buf) and sug.row < vim.api.nvim_buf_line_count(sug.buf) then
    s.error_buf = sug.buf
    vim.api.nvim_buf_set_extmark(sug.buf, ns, sug.row, 0, { virt_text = { { "  " .. text, "WarningMsg" } }, virt_text_pos = "eol" })
  end
end

--- The last inline-suggestion error shown (one line), or nil.
function M.last_error()
  return s.last_error
end

--- Asks for a suggestion at the cursor now (what the debounce timer and :CfgateComplete call).
function M.trigger()
  M.cancel()
  local buf = vim.api.nvim_get_current_buf()
  if vim.bo[buf].buftype ~= "" then
    return
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  local prefix, suffix = M.context(buf, row, col)
  local o = opts()
  local name = vim.api.nvim_buf_get_name(buf)
  local ft = vim.bo[buf].filetype
  local params = {
    prefix = prefix,
    suffix = suffix,
    language = ft ~= "" and ft or nil,
    path = name ~= "" and vim.fn.fnamemodify(name, ":.") or nil,
    max_tokens = o.max_tokens,
    temperature = o.temperature,
  }
  -- taken: bytes of the suggestion already accepted (word by word, line by line).
  local sug = { buf = buf, row = row, col = col, text = "", done = false, taken = 0 }
  s.sug = sug
  local req
  req = client.request("cfgate/complete", params, {
    on_progress = function(value)
      if s.sug ~= sug then
        return
      end
      if value.kind == "report" and type(value.content) == "string" then
        sug.text = sug.text .. value.content
        render()
      end
    end,
    on_result = function(result)
      if s.req == req then
        s.req = nil
      end
      if s.sug ~= sug then
        return
      end
      sug.done = true
      s.last_error = nil
      if type(result) == "table" and type(result.text) == "string" then
        sug.text = result.text:sub(sug.taken + 1)
      end
      render()
      vim.api.nvim_exec_autocmds("User", { pattern = "CfgateSuggestion", modeline = false })
    end,
    on_error = function(err)
      if s.req == req then
        s.req = nil
      end
      local shown = s.sug == sug
      if shown then
        clear_marks(buf)
        s.sug = nil
      end
      report_error(err, shown and sug or nil)
    end,
  })
  if not req.done then
    s.req = req
  end
end

--- Restarts the debounce timer; when it fires in the same place, trigger().
function M.schedule()
  local buf = vim.api.nvim_get_current_buf()
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  local cursor = vim.api.nvim_win_get_cursor(0)
  if not s.timer then
    s.timer = vim.uv.new_timer()
  end
  s.timer:stop()
  s.timer:start(
    opts().debounce_ms,
    0,
    vim.schedule_wrap(function()
      if vim.api.nvim_get_current_buf() ~= buf or not vim.api.nvim_get_mode().mode:find("^i") then
        return
      end
      if vim.api.nvim_buf_get_changedtick(buf) ~= tick then
        return
      end
      local now = vim.api.nvim_win_get_cursor(0)
      if now[1] ~= cursor[1] or now[2] ~= cursor[2] then
        return
      end
      M.trigger()
    end)
  )
end

--- The suggestion shown (a copy), or nil.
function M.suggestion()
  return s.sug and vim.deepcopy(s.sug) or nil
end

--- Whether a cfgate/complete request is in flight.
function M.busy()
  return s.req ~= nil
end

--- The part of `text` accept(kind) inserts: "word" the next word (with the white space
--- before it, or a run of punctuation), "line" the rest of the first line (or, when
--- the suggestion starts a new line, that line break and the next line), else all.
function M.part(text, kind)
  if kind == "word" then
    -- Bytes >= 0x80 count as letters, so a word of any script stays whole.
    return text:match("^%s*[%w_\128-\255]+") or text:match("^%s*[^%w_%s\128-\255]+") or text:match("^%s+") or text
  elseif kind == "line" then
    if text:sub(1, 1) == "\n" then
      return "\n" .. (text:sub(2):match("^[^\n]*") or "")
    end
    return text:match("^[^\n]*")
  end
  return text
end

--- Inserts the suggestion (kind nil), or its next word ("word") or line ("line"), at its
--- position; the rest stays shown after the cursor. False if there is none here.
function M.accept(kind)
  local sug = s.sug
  local buf = vim.api.nvim_get_current_buf()
  if not sug or sug.text == "" or sug.buf ~= buf or not vim.api.nvim_buf_is_valid(buf) then
    return false
  end
  local text = M.part(sug.text, kind)
  local whole = text == sug.text
  if whole then
    -- Accepting while it still streams takes what is shown and stops the rest.
    if s.req then
      s.req:cancel()
      s.req = nil
    end
    s.sug = nil
  end
  clear_marks(buf)
  local lines = vim.split(text, "\n", { plain = true })
  local line = vim.api.nvim_buf_get_lines(buf, sug.row, sug.row + 1, false)[1] or ""
  local col = math.min(sug.col, #line)
  vim.api.nvim_buf_set_text(buf, sug.row, col, sug.row, col, lines)
  local end_row = sug.row + #lines - 1
  local end_col = #lines == 1 and (col + #lines[1]) or #lines[#lines]
  s.skip = { buf = buf, tick = vim.api.nvim_buf_get_changedtick(buf) }
  if not whole then
    sug.taken = sug.taken + #text
    sug.text = sug.text:sub(#text + 1)
    sug.row, sug.col = end_row, end_col
  end
  vim.api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  if not whole then
    render()
  end
  return true
end

function M.accept_word()
  return M.accept("word")
end

function M.accept_line()
  return M.accept("line")
end

--- Removes the suggestion; false if there was none.
function M.dismiss()
  if s.sug or s.req then
    M.cancel()
    return true
  end
  return false
end

function M.toggle(on)
  if on == nil then
    on = s.disabled
  end
  s.disabled = not on
  if s.disabled then
    M.cancel()
  end
  client.info("inline suggestions " .. (on and "on" or "off"))
end

local function on_text_changed_i(ev)
  local skip = s.skip
  s.skip = nil
  if skip and skip.buf == ev.buf and skip.tick == vim.api.nvim_buf_get_changedtick(ev.buf) then
    -- Our own accept: a partly accepted suggestion stays shown.
    return
  end
  M.cancel()
  if opts().auto_trigger and M.enabled_for(ev.buf) then
    M.schedule()
  end
end

local function on_cursor_moved()
  local sug = s.sug
  if not sug then
    return
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  if vim.api.nvim_get_current_buf() ~= sug.buf or cursor[1] - 1 ~= sug.row or cursor[2] ~= sug.col then
    M.cancel()
  end
end

local function map(lhs, fn, desc)
  if not lhs or lhs == "" then
    return
  end
  vim.keymap.set("i", lhs, function()
    if not fn() then
      -- Nothing to do: the key keeps its own meaning.
      vim.api.nvim_feedkeys(vim.keycode(lhs), "n", false)
    end
  end, { desc = desc, silent = true })
end

function M.setup()
  -- Its own colours, not a link to Comment: in a terminal without true colour a theme's
  -- Comment may have only a GUI colour, and the suggestion would look like typed code.
  vim.api.nvim_set_hl(0, "CfgateSuggestion", { fg = "#808080", ctermfg = 244, italic = true, default = true })
  local group = vim.api.nvim_create_augroup(augroup, { clear = true })
  local o = opts()
  if not o.enabled then
    M.cancel()
    return
  end
  vim.api.nvim_create_autocmd("TextChangedI", { group = group, callback = on_text_changed_i })
  vim.api.nvim_create_autocmd({ "TextChangedP", "TextChanged", "InsertLeave", "BufLeave" }, {
    group = group,
    callback = function()
      M.cancel()
    end,
  })
  vim.api.nvim_create_autocmd({ "CursorMovedI", "CursorMoved" }, { group = group, callback = on_cursor_moved })
  local keys = o.keymaps or {}
  map(keys.accept, function()
    return M.accept()
  end, "cfgate: accept the suggestion")
  map(keys.accept_word, M.accept_word, "cfgate: accept the suggestion's next word")
  map(keys.accept_line, M.accept_line, "cfgate: accept the suggestion's next line")
  map(keys.dismiss, M.dismiss, "cfgate: dismiss the suggestion")
  map(keys.trigger, function()
    M.trigger()
    return true
  end, "cfgate: suggest at the cursor")
end

return M
