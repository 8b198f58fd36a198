--- Sessions: conversations the daemon keeps under a name (`cfgate/sessions`,
--- `cfgate/session`), which every editor and `cfgate chat --session` continues.
local config = require("cfgate.config")
local client = require("cfgate.client")

local M = {}

--- A session name the daemon accepts (1-64 of A-Z a-z 0-9 . _ -, not starting with
--- "."), made from any text: other characters become "-"; nil when nothing is left.
function M.session_name(text)
  if type(text) ~= "string" then
    return nil
  end
  local name = text:gsub("[^%w%._%-]", "-"):gsub("^%.+", ""):sub(1, 64)
  if name == "" then
    return nil
  end
  return name
end

--- The default session from the `chat.session` option (a name, or a function of the
--- working directory returning one), or nil for plain chats.
function M.default_session()
  local opt = config.get().chat.session
  if type(opt) == "function" then
    local ok, value = pcall(opt, vim.fn.getcwd())
    opt = ok and value or nil
  end
  return M.session_name(opt)
end

--- Buffer lines for stored messages (system messages are not shown), ending with an
--- empty "## You" section.
function M.history_lines(messages)
  local o = config.get().chat
  local lines = {}
  for _, m in ipairs(messages or {}) do
    local heading = (m.role == "user" and o.user_heading) or (m.role == "assistant" and o.assistant_heading) or nil
    if heading and type(m.content) == "string" and m.content ~= "" then
      vim.list_extend(lines, { heading, "" })
      vim.list_extend(lines, vim.split(m.content, "\n", { plain = true }))
      table.insert(lines, "")
    end
  end
  vim.list_extend(lines, { o.user_heading, "", "" })
  return lines
end

--- :CfgateSessions: picks a stored session (`cfgate/sessions`, most recent first) with
--- vim.ui.select and opens the chat on it; the last entry asks for a new name.
function M.pick_session()
  client.request("cfgate/sessions", vim.empty_dict(), {
    on_result = function(result)
      local items = {}
      for _, sess in ipairs(type(result) == "table" and result.sessions or {}) do
        table.insert(items, sess)
      end
      table.insert(items, { new = true })
      vim.ui.select(items, {
        prompt = "cfgate session",
        format_item = function(item)
          if item.new then
            return "new session..."
          end
          return ("%s  (%d turn%s, %s)"):format(
            item.name,
            item.turns or 0,
            item.turns == 1 and "" or "s",
            os.date("%Y-%m-%d %H:%M", item.updated or 0)
          )
        end,
      }, function(choice)
        if not choice then
          return
        end
        if not choice.new then
          require("cfgate.chat").open(nil, { session = choice.name })
          return
        end
        vim.ui.input({ prompt = "cfgate session name: ", default = M.default_session() }, function(input)
          local name = M.session_name(input and vim.trim(input) or nil)
          if name then
            require("cfgate.chat").open(nil, { session = name })
          end
        end)
      end)
    end,
  })
end

return M
