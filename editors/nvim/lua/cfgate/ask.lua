--- :CfgateAsk: one answer about a selection, streamed into a float.
local config = require("cfgate.config")
local client = require("cfgate.client")
local chat = require("cfgate.chat")

local M = {}

local ns = vim.api.nvim_create_namespace("cfgate_ask")

local function insert_at(buf, mark, text)
  if text == "" then
    return
  end
  local pos = vim.api.nvim_buf_get_extmark_by_id(buf, ns, mark, {})
  if pos[1] then
    vim.api.nvim_buf_set_text(buf, pos[1], pos[2], pos[1], pos[2], vim.split(text, "\n", { plain = true }))
  end
end

--- The text of lines line1..line2, or the exact visual selection when the command came
--- from a characterwise/blockwise visual selection of those lines.
local function selection(buf, line1, line2)
  local vmode = vim.fn.visualmode()
  local vs, ve = vim.fn.getpos("'<"), vim.fn.getpos("'>")
  if (vmode == "v" or vmode == "\22") and vs[2] == line1 and ve[2] == line2 and vim.fn.exists("*getregion") == 1 then
    return table.concat(vim.fn.getregion(vs, ve, { type = vmode }), "\n")
  end
  return table.concat(vim.api.nvim_buf_get_lines(buf, line1 - 1, line2, false), "\n")
end

local function open_float(title)
  local o = config.get().ask
  local width = math.max(40, math.floor(vim.o.columns * o.width))
  local height = math.max(8, math.floor(vim.o.lines * o.height))
  width = math.min(width, vim.o.columns - 2)
  height = math.min(height, vim.o.lines - 4)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].filetype = "markdown"
  local win_opts = {
    relative = "editor",
    width = width,
    height = height,
    row = math.floor((vim.o.lines - height) / 2) - 1,
    col = math.floor((vim.o.columns - width) / 2),
    style = "minimal",
    border = o.border,
  }
  if o.border and o.border ~= "none" then
    win_opts.title = " " .. title .. " "
    win_opts.title_pos = "center"
  end
  local win = vim.api.nvim_open_win(buf, true, win_opts)
  vim.wo[win].wrap = true
  vim.wo[win].linebreak = true
  return buf, win
end

--- :'<,'>CfgateAsk {instruction}: the selection and the instruction go to cfgate/chat;
--- the answer streams into a float (q closes it and stops the answer).
function M.ask(line1, line2, instruction, opts)
  opts = opts or {}
  local src = vim.api.nvim_get_current_buf()
  if not instruction or vim.trim(instruction) == "" then
    vim.ui.input({ prompt = "cfgate ask: " }, function(input)
      if input and vim.trim(input) ~= "" then
        M.ask(line1, line2, input, opts)
      end
    end)
    return
  end
  local text = selection(src, line1, line2)
  local ft = vim.bo[src].filetype
  local content = instruction .. "\n\n```" .. ft .. "\n" .. text .. "\n```"
  local messages = {}
  local o = config.get().chat
  if o.system_prompt and o.system_prompt ~= "" then
    table.insert(messages, { role = "system", content = o.system_prompt })
  end
  table.insert(messages, { role = "user", content = content })
  local short = instruction:gsub("\n.*", "")
  if #short > 40 then
    short = short:sub(1, 37) .. "..."
  end
  local buf, win = open_float("cfgate: " .. short)
  local mark = vim.api.nvim_buf_set_extmark(buf, ns, 0, 0, {})
  local streamed = false
  local req
  local function close()
    if req then
      req:cancel()
    end
    if vim.api.nvim_win_is_valid(win) then
      vim.api.nvim_win_close(win, true)
    end
  end
  vim.keymap.set("n", "q", close, { buffer = buf, silent = true, desc = "cfgate: close" })
  vim.keymap.set("n", "<Esc>", close, { buffer = buf, silent = true, desc = "cfgate: close" })
  vim.api.nvim_create_autocmd("BufWipeout", {
    buffer = buf,
    once = true,
    callback = function()
      if req then
        req:cancel()
      end
    end,
  })
  local params = vim.tbl_extend("force", vim.deepcopy(o.params or {}), { messages = messages })
  req = client.request("cfgate/chat", params, {
    on_progress = function(value)
      if not vim.api.nvim_buf_is_valid(buf) or value.kind ~= "report" then
        return
      end
      if type(value.content) == "string" then
        if not streamed then
          chat.clear_waiting(buf)
        end
        streamed = true
        insert_at(buf, mark, value.content)
      elseif type(value.message) == "string" and not streamed then
        -- e.g. "rate limited: waiting 3 s": a note where the answer will come, not text.
        local pos = vim.api.nvim_buf_get_extmark_by_id(buf, ns, mark, {})
        if pos[1] then
          chat.show_waiting(buf, pos[1], value.message)
        end
      end
    end,
    on_result = function(result)
      if not vim.api.nvim_buf_is_valid(buf) then
        return
      end
      if not streamed and type(result) == "table" and type(result.content) == "string" then
        insert_at(buf, mark, result.content)
      end
      chat.clear_waiting(buf)
      vim.b[buf].cfgate_done = true
      vim.api.nvim_exec_autocmds("User", { pattern = "CfgateAskDone", modeline = false })
    end,
    on_error = function(err)
      if vim.api.nvim_buf_is_valid(buf) then
        chat.clear_waiting(buf)
        local lines = vim.split(client.format_error(err), "\n", { plain = true })
        vim.api.nvim_buf_set_lines(buf, -1, -1, false, vim.list_extend({ "" }, lines))
        vim.b[buf].cfgate_done = true
      end
      client.notify_error(err)
      vim.api.nvim_exec_autocmds("User", { pattern = "CfgateAskDone", modeline = false })
    end,
  })
  return buf, win
end

return M
