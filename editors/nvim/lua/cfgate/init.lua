--- cfgate for Neovim: chat, ask-about-selection and inline suggestions through the
--- cfgate daemon (Cloudflare AI Gateway). See :help cfgate.
local config = require("cfgate.config")
local client = require("cfgate.client")

local M = {}

M.configured = false

--- Options: see :help cfgate-setup. Calling it again replaces the options; a running
--- daemon gets the new settings through workspace/didChangeConfiguration.
function M.setup(opts)
  local before = vim.deepcopy(config.get())
  config.set(opts)
  M.configured = true
  require("cfgate.inline").setup()
  M.setup_code_actions()
  local after = config.get()
  if client.get() then
    if not vim.deep_equal(before.cmd, after.cmd) or not vim.deep_equal(before.cmd_env, after.cmd_env) then
      client.restart()
    elseif not vim.deep_equal(before.settings, after.settings) then
      -- The daemon merges what it is sent: a key left out now is sent as null, so the
      -- settings are replaced, as setup() says, and not merged.
      local changed = vim.deepcopy(after.settings or {})
      for key in pairs(before.settings or {}) do
        if changed[key] == nil then
          changed[key] = vim.NIL
        end
      end
      if next(changed) ~= nil then
        client.notify("workspace/didChangeConfiguration", { settings = { cfgate = changed } })
        vim.schedule(client.refresh_settings)
      end
    end
  end
end

local function wants_code_actions(buf)
  local o = config.get()
  return o.code_actions
    and vim.api.nvim_buf_is_valid(buf)
    and vim.bo[buf].buftype == ""
    and vim.bo[buf].buflisted
    and o.inline.filetypes[vim.bo[buf].filetype] ~= false
end

--- With `code_actions`, file buffers are attached to the daemon's LSP client as they
--- are entered (and those open now), so `gra` offers cfgate's actions.
function M.setup_code_actions()
  local group = vim.api.nvim_create_augroup("cfgate_code_actions", { clear = true })
  if not config.get().code_actions then
    return
  end
  vim.api.nvim_create_autocmd("BufEnter", {
    group = group,
    callback = function(ev)
      if wants_code_actions(ev.buf) then
        client.attach(ev.buf)
      end
    end,
  })
end

--- Starts the daemon (otherwise it starts with the first request).
function M.start()
  return client.start() ~= nil
end

--- Stops the daemon; wait_ms waits for the process to end.
function M.stop(wait_ms)
  require("cfgate.inline").cancel()
  return client.stop(wait_ms)
end

function M.restart()
  return client.restart() ~= nil
end

--- :CfgateChat [text]
function M.chat(text, opts)
  return require("cfgate.chat").open(text, opts)
end

--- :'<,'>CfgateAsk {instruction}
function M.ask(line1, line2, instruction)
  return require("cfgate.ask").ask(line1, line2, instruction)
end

--- :CfgateComplete: a suggestion at the cursor now.
function M.complete()
  require("cfgate.inline").trigger()
end

function M.accept()
  return require("cfgate.inline").accept()
end

function M.dismiss()
  return require("cfgate.inline").dismiss()
end

--- Sets the model for this Neovim's requests (workspace/didChangeConfiguration).
function M.set_model(model)
  model = vim.trim(model or "")
  if model == "" then
    return
  end
  config.get().settings.model = model
  client.notify("workspace/didChangeConfiguration", { settings = { cfgate = { model = model } } })
  client.info("model " .. model)
end

--- :CfgateModels [model]: pick among the models the gateway offers (cfgate/models), the
--- current one first; or set [model] directly.
function M.models(model)
  if model and vim.trim(model) ~= "" then
    M.set_model(model)
    return
  end
  require("cfgate.models").pick(M.set_model)
end

--- The words shown for a daemon state: "rate limited" for `rate_limited`, else the state.
local function state_words(state)
  return state == "rate_limited" and "rate limited" or state
end

--- Readable lines for a budget of cfgate/status's `budgets`.
local function budget_line(b)
  local limit = type(b.limit) == "number" and ("%d a minute%s"):format(b.limit, b.learned and " (learned from 429s)" or "")
    or "no limit known"
  local line = ("rate budget %s: %s, %s used in the last minute"):format(
    tostring(b.gateway),
    limit,
    tostring(b.used_last_minute or 0)
  )
  if type(b.cool_down_ms) == "number" then
    line = line .. (", rate limited: cooling down %d s"):format(math.ceil(b.cool_down_ms / 1000))
  end
  return line
end

--- Readable lines for a cfgate/status result; live: the last cfgate/didChangeStatus
--- ({ state, message? }), shown first when given.
function M.format_status(st, live)
  local lines = {
    ("cfgate %s, up %ss"):format(st.version or "?", tostring(st.uptime_secs or "?")),
  }
  if type(live) == "table" and type(live.state) == "string" then
    local line = "state: " .. state_words(live.state)
    if type(live.message) == "string" and live.message ~= "" then
      line = line .. " (" .. live.message .. ")"
    end
    table.insert(lines, line)
  end
  vim.list_extend(lines, {
    "credentials: " .. (st.credentials_complete and "complete" or ("missing " .. table.concat(st.missing or {}, ", "))),
  })
  if type(st.settings_error) == "string" then
    table.insert(lines, "settings error: " .. st.settings_error)
  end
  table.insert(lines, "model: " .. tostring(st.model))
  table.insert(lines, "base url: " .. (type(st.base_url) == "string" and st.base_url or "(not set)"))
  if type(st.account_id) == "string" then
    table.insert(lines, ("account: %s, gateway: %s"):format(st.account_id, tostring(st.gateway_id)))
  end
  local clients = {}
  for _, c in ipairs(type(st.clients) == "table" and st.clients or {}) do
    table.insert(clients, (type(c.name) == "string" and c.name or "?") .. (type(c.version) == "string" and (" " .. c.version) or ""))
  end
  if #clients > 0 then
    table.insert(lines, ("clients (%d): %s"):format(#clients, table.concat(clients, ", ")))
  end
  local sessions = {}
  for _, sess in ipairs(type(st.sessions) == "table" and st.sessions or {}) do
    table.insert(sessions, ("%s (%d turn%s)"):format(tostring(sess.name), sess.turns or 0, sess.turns == 1 and "" or "s"))
  end
  table.insert(lines, "sessions: " .. (#sessions > 0 and table.concat(sessions, ", ") or "none"))
  for _, b in ipairs(type(st.budgets) == "table" and st.budgets or {}) do
    if type(b) == "table" then
      table.insert(lines, budget_line(b))
    end
  end
  local r = st.requests or {}
  table.insert(
    lines,
    ("requests: %s total, %s in flight, %s failed"):format(
      tostring(r.total or 0),
      tostring(r.in_flight or 0),
      tostring(r.failed or 0)
    )
  )
  return lines
end

--- For 'statusline' / 'winbar' (and statusline plugins): "cfgate: ready", "cfgate: busy",
--- "cfgate: rate limited", "cfgate: error", "cfgate: unauthorized", from the daemon's
--- `cfgate/didChangeStatus`; "" while no daemon runs. Redraw on the `User CfgateStatus`
--- autocommand.
---   vim.o.statusline = "%f %= %{v:lua.require'cfgate'.statusline()}"
function M.statusline()
  local st = client.status()
  if not st then
    return ""
  end
  return "cfgate: " .. state_words(st.state)
end

--- The highlight group for the statusline text: CfgateStatusRateLimited while a gateway's
--- rate budget cools down after a 429, CfgateStatusError on error/unauthorized, else nil.
function M.statusline_highlight()
  local st = client.status()
  local state = st and st.state
  if state == "rate_limited" then
    return "CfgateStatusRateLimited"
  elseif state == "error" or state == "unauthorized" then
    return "CfgateStatusError"
  end
  return nil
end

--- statusline() with its highlight, for a statusline expression that is itself
--- evaluated (`%{% ... %}`):
---   vim.o.statusline = "%f %= %{%v:lua.require'cfgate'.statusline_hl()%}"
function M.statusline_hl()
  local text = M.statusline():gsub("%%", "%%%%")
  local group = M.statusline_highlight()
  if text == "" or not group then
    return text
  end
  return ("%%#%s#%s%%*"):format(group, text)
end

--- :CfgateStatus. With a callback, gets the status table instead of showing it.
function M.status(callback)
  client.request("cfgate/status", vim.empty_dict(), {
    on_result = function(st)
      if callback then
        callback(st)
        return
      end
      local live = client.status()
      local lines = M.format_status(st, live)
      local level = (st.credentials_complete and not (live and live.state == "rate_limited")) and vim.log.levels.INFO
        or vim.log.levels.WARN
      vim.notify(table.concat(lines, "\n"), level, { title = "cfgate" })
    end,
  })
end

return M
