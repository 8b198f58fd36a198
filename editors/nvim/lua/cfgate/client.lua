--- The daemon connection: one `cfgate serve` per Neovim, run by Neovim's own LSP client
--- (not attached to any buffer), plus request handles with `$/progress` streaming.
local config = require("cfgate.config")

local M = {}

local nv11 = vim.fn.has("nvim-0.11") == 1

--- JSON-RPC RequestCancelled.
M.CANCELLED = -32800

local state = {
  client_id = nil,
  stopping = false,
  queue = {}, -- functions(client, err) waiting for the initialize answer
  tokens = {}, -- progress token -> function(value)
  inflight = {}, -- Request -> true
  seq = 0,
  init_timer = nil,
  status = nil, -- the last cfgate/didChangeStatus params
  context_chars = nil, -- completion_context_chars from cfgate/status
  start_failed = false, -- the last start() could not start the daemon
}

--- Calls a client method on both the 0.10 (`client.f(...)`) and 0.11 (`client:f(...)`) APIs.
local function call(client, name, ...)
  if nv11 then
    return client[name](client, ...)
  end
  return client[name](...)
end
M.call = call

local function is_stopped(client)
  return call(client, "is_stopped")
end

-- Errors -------------------------------------------------------------------------------

--- "cfgate: <message>" plus "hint: <data.hint>" on its own line: never raw JSON.
function M.format_error(err)
  if type(err) ~= "table" then
    return "cfgate: " .. tostring(err)
  end
  local message = err.message
  if type(message) ~= "string" or message == "" then
    message = "request failed" .. (err.code and (" (code " .. tostring(err.code) .. ")") or "")
  end
  local out = "cfgate: " .. message
  local data = err.data
  if type(data) == "table" and type(data.hint) == "string" and data.hint ~= "" then
    out = out .. "\nhint: " .. data.hint
  end
  return out
end

--- Shows an error with vim.notify; cancellations and already reported errors are silent.
function M.notify_error(err)
  if type(err) == "table" and (err.code == M.CANCELLED or err.reported) then
    return
  end
  vim.notify(M.format_error(err), vim.log.levels.ERROR, { title = "cfgate" })
end

function M.info(message)
  vim.notify("cfgate: " .. message, vim.log.levels.INFO, { title = "cfgate" })
end

-- Requests -----------------------------------------------------------------------------

---@class cfgate.Request
---@field method string
---@field id integer|nil    request id once sent
---@field token string|nil  workDoneToken when streaming
---@field done boolean
---@field cancelled boolean
local Request = {}
Request.__index = Request

--- Stops the request: `$/cancelRequest` if it was sent (the daemon drops the upstream
--- HTTP request). Its callbacks are not called afterwards.
function Request:cancel()
  if self.done then
    return
  end
  self.done = true
  self.cancelled = true
  if self.token then
    state.tokens[self.token] = nil
  end
  state.inflight[self] = nil
  if self.id and self.client and not is_stopped(self.client) then
    call(self.client, "cancel_request", self.id)
  end
end

function Request:_finish(err, result)
  if self.done then
    return
  end
  self.done = true
  if self.token then
    state.tokens[self.token] = nil
  end
  state.inflight[self] = nil
  if err then
    if self.on_error then
      self.on_error(err)
    else
      M.notify_error(err)
    end
  elseif self.on_result then
    self.on_result(result)
  end
end

--- Stops the wait for `initialize` (it was answered, or the daemon ended first).
local function stop_init_timer()
  if state.init_timer then
    state.init_timer:stop()
    state.init_timer:close()
    state.init_timer = nil
  end
end

local function fail_queue(err)
  local queue = state.queue
  state.queue = {}
  for _, fn in ipairs(queue) do
    fn(nil, err)
  end
end

local function progress_handler(err, params, ctx, cfg)
  local token = type(params) == "table" and params.token or nil
  local cb = token ~= nil and state.tokens[token] or nil
  if cb then
    cb(type(params.value) == "table" and params.value or {})
    return
  end
  -- Not one of ours: Neovim's default handling (LspProgress, vim.lsp.status()).
  local default = vim.lsp.handlers["$/progress"]
  if default then
    return default(err, params, ctx, cfg)
  end
end

-- The status colours (statusline, chat notes): `:highlight` them to change; set with
-- default = true, so a colorscheme's or the user's own definition wins.
local function define_highlights()
  vim.api.nvim_set_hl(0, "CfgateStatusRateLimited", { default = true, link = "WarningMsg" })
  vim.api.nvim_set_hl(0, "CfgateStatusError", { default = true, link = "ErrorMsg" })
end
define_highlights()
vim.api.nvim_create_autocmd("ColorScheme", {
  group = vim.api.nvim_create_augroup("cfgate_highlights", { clear = true }),
  callback = define_highlights,
})

--- `cfgate/didChangeStatus`: the daemon's state (busy, ready, rate_limited, unauthorized, error) for
--- the statusline; User CfgateStatus tells statusline plugins to redraw.
local function status_handler(_, params)
  if type(params) == "table" and type(params.state) == "string" then
    state.status = params
    vim.schedule(function()
      vim.api.nvim_exec_autocmds("User", { pattern = "CfgateStatus", modeline = false })
      vim.cmd("redrawstatus!")
    end)
  end
end

--- The daemon's last reported state ({ state, message? }), or nil when it is not running.
function M.status()
  if not M.get() then
    return nil
  end
  return state.status
end

--- The `completion_context_chars` that applies: this Neovim's own setting (it overrides
--- the daemon's environment and config file), else the daemon's from cfgate/status.
function M.context_chars()
  local own = config.get().settings.completion_context_chars
  if type(own) == "number" and own > 0 then
    return own
  end
  return state.context_chars or 8000
end

--- Reads the settings the plugin follows from cfgate/status (after a start or a change).
function M.refresh_settings()
  local client = M.get()
  if client and client.initialized then
    call(client, "request", "cfgate/status", vim.empty_dict(), function(_, result)
      if type(result) == "table" and type(result.completion_context_chars) == "number" and result.completion_context_chars > 0 then
        state.context_chars = result.completion_context_chars
      end
    end)
  end
end

--- The running client, if any.
function M.get()
  local client = state.client_id and vim.lsp.get_client_by_id(state.client_id) or nil
  if client and not is_stopped(client) then
    return client
  end
  return nil
end

--- Starts the daemon unless it runs; returns the client (maybe still initializing), or nil
--- after telling the user why not.
function M.start()
  local existing = M.get()
  if existing then
    return existing
  end
  state.start_failed = true -- until it starts
  local opts = config.get()
  local cmd = opts.cmd
  if type(cmd) ~= "table" or type(cmd[1]) ~= "string" then
    vim.notify("cfgate: setup({cmd = ...}) must be a list such as { 'cfgate', 'serve', '--shared' }", vim.log.levels.ERROR)
    return nil
  end
  if vim.fn.executable(cmd[1]) ~= 1 then
    vim.notify(
      ("cfgate: executable not found: %s\nhint: install cfgate (cargo install --path . in the cfgate checkout) or set setup({ cmd = { '/path/to/cfgate', 'serve', '--shared' } })"):format(
        cmd[1]
      ),
      vim.log.levels.ERROR
    )
    return nil
  end
  -- The daemon refuses an unknown key at initialize; say so clearly instead.
  local unknown = config.unknown_settings(opts.settings)
  if #unknown > 0 then
    vim.notify(
      "cfgate: unknown settings key(s): "
        .. table.concat(unknown, ", ")
        .. "\nhint: fix setup({ settings = ... }); the keys are "
        .. table.concat(config.setting_keys, ", "),
      vim.log.levels.ERROR
    )
    return nil
  end

  local stderr = require("cfgate.stderr")
  local log_offset = stderr.offset()
  local init_options = nil
  if type(opts.settings) == "table" and next(opts.settings) ~= nil then
    init_options = vim.deepcopy(opts.settings)
  end
  local lsp_config = {
    name = "cfgate",
    cmd = cmd,
    cmd_env = opts.cmd_env,
    root_dir = vim.fn.getcwd(),
    init_options = init_options,
    handlers = { ["$/progress"] = progress_handler, ["cfgate/didChangeStatus"] = status_handler },
    flags = { exit_timeout = 2000 },
    on_init = function(client)
      -- Only changes are sent: until the first one, an initialized daemon is ready.
      state.status = { state = "ready" }
      stop_init_timer()
      local queue = state.queue
      state.queue = {}
      for _, fn in ipairs(queue) do
        fn(client)
      end
      vim.schedule(M.refresh_settings)
    end,
    on_error = function(code, err)
      local name = vim.lsp.rpc.client_errors[code] or tostring(code)
      -- A failed initialize (e.g. a bad settings key) lands here; waiting requests fail.
      if name == "INITIALIZE_ERROR" or name == "SERVER_RESULT_CALLBACK_ERROR" then
        local text = type(err) == "table" and (err.message or vim.inspect(err)) or tostring(err)
        local failure = { message = "the daemon could not start: " .. text, reported = false }
        vim.schedule(function()
          M.notify_error(failure)
          failure.reported = true
          fail_queue(failure)
        end)
      end
    end,
    on_exit = function(code, signal, client_id)
      vim.schedule(function()
        if state.client_id ~= client_id then
          return
        end
        -- Expected only when we stopped it or Neovim is exiting: `serve --shared` ends
        -- with code 0 when the shared daemon goes away, which is a failure to report.
        local expected = state.stopping or vim.v.exiting ~= vim.NIL
        state.client_id = nil
        state.stopping = false
        state.context_chars = nil
        -- Ended before initialize: this is the one report, not a timeout 15 s later.
        stop_init_timer()
        -- This daemon's requests, taken now: a daemon started meanwhile has its own.
        local waiting = state.queue
        state.queue = {}
        local in_flight = vim.tbl_keys(state.inflight)
        local function fail_all(err)
          for _, fn in ipairs(waiting) do
            fn(nil, err)
          end
          for _, req in ipairs(in_flight) do
            req:_finish(err)
          end
        end
        if expected then
          fail_all({ code = M.CANCELLED, message = "cfgate stopped" })
          return
        end
        state.start_failed = true
        -- The process may end before Neovim has logged the last of its stderr (read on
        -- another callback): its reason is looked for a few times, 50 ms apart.
        local function report(tries)
          local reason = stderr.last_line(cmd[1], log_offset)
          if not reason and tries > 0 then
            vim.defer_fn(function()
              report(tries - 1)
            end, 50)
            return
          end
          local err = {
            message = ("the daemon connection ended (cfgate exited with code %s%s)%s"):format(
              tostring(code),
              (signal and signal ~= 0) and (", signal " .. tostring(signal)) or "",
              reason and (": " .. reason) or ""
            ),
            data = { hint = "see cfgate's log in ~/.local/state/cfgate/ and :checkhealth cfgate" },
          }
          M.notify_error(err)
          fail_all(vim.tbl_extend("force", err, { reported = true }))
        end
        report(4)
      end)
    end,
  }

  local client_id
  if nv11 then
    -- Never reuse a client of the same name: one still stopping (after restart()) would be
    -- taken for the new daemon, whose initialize would then never come.
    client_id = vim.lsp.start(lsp_config, {
      attach = false,
      reuse_client = function()
        return false
      end,
    })
  else
    client_id = vim.lsp.start_client(lsp_config)
  end
  if not client_id then
    vim.notify("cfgate: could not start " .. table.concat(cmd, " "), vim.log.levels.ERROR)
    return nil
  end
  state.client_id = client_id
  state.stopping = false
  state.start_failed = false
  local timer = vim.uv.new_timer()
  state.init_timer = timer
  timer:start(
    15000,
    0,
    vim.schedule_wrap(function()
      if state.init_timer ~= timer then
        return
      end
      timer:close()
      state.init_timer = nil
      local failure = { message = "the daemon did not answer initialize within 15 s" }
      M.notify_error(failure)
      failure.reported = true
      fail_queue(failure)
    end)
  )
  return vim.lsp.get_client_by_id(client_id)
end

--- Calls fn(client) once the daemon is initialized, or fn(nil, err) if it cannot start.
function M.with_client(fn)
  local client = M.start()
  if not client then
    fn(nil, { message = "the daemon is not running", reported = true })
    return
  end
  if client.initialized then
    fn(client)
  else
    table.insert(state.queue, fn)
  end
end

--- Sends a request. opts: on_result(result), on_error(err) (default: notify),
--- on_progress(value) (adds a workDoneToken and receives its `$/progress` values).
---@return cfgate.Request
function M.request(method, params, opts)
  opts = opts or {}
  local req = setmetatable({
    method = method,
    done = false,
    cancelled = false,
    on_result = opts.on_result,
    on_error = opts.on_error,
  }, Request)
  params = params and vim.deepcopy(params) or vim.empty_dict()
  if opts.on_progress then
    state.seq = state.seq + 1
    req.token = ("cfgate-%d-%d"):format(vim.fn.getpid(), state.seq)
    params.workDoneToken = req.token
    local on_progress = opts.on_progress
    state.tokens[req.token] = function(value)
      if not req.done then
        on_progress(value)
      end
    end
  end
  state.inflight[req] = true
  M.with_client(function(client, err)
    if req.done then
      return
    end
    if not client then
      req:_finish(err)
      return
    end
    req.client = client
    local ok, id = call(client, "request", method, params, function(rerr, result)
      req:_finish(rerr, result)
    end)
    if not ok then
      req:_finish({ message = "the daemon is not running" })
      return
    end
    req.id = id
  end)
  return req
end

--- Attaches the daemon's LSP client to a buffer, so Neovim offers its code actions
--- (explain, fix, add docs on a selection: `gra` in visual mode) there. Neovim then
--- keeps the daemon's copy of the buffer in step (didOpen/didChange).
function M.attach(buf)
  -- A daemon that could not start is not tried again on every buffer entered (its
  -- error was shown once); the next command or setup() tries again.
  if not M.get() and state.start_failed then
    return
  end
  M.with_client(function(client)
    if client and vim.api.nvim_buf_is_valid(buf) and not vim.lsp.buf_is_attached(buf, client.id) then
      vim.lsp.buf_attach_client(buf, client.id)
    end
  end)
end

--- Sends a notification once the daemon is up.
function M.notify(method, params)
  M.with_client(function(client)
    if client then
      call(client, "notify", method, params)
    end
  end)
end

--- Synchronous request (for :checkhealth). Returns result or nil, err.
function M.request_sync(method, params, timeout_ms)
  timeout_ms = timeout_ms or 5000
  local client = M.start()
  if not client then
    return nil, { message = "the daemon is not running" }
  end
  if not vim.wait(timeout_ms, function()
    return client.initialized or is_stopped(client)
  end, 20) or not client.initialized then
    return nil, { message = "the daemon did not initialize" }
  end
  local response, err = call(client, "request_sync", method, params or vim.empty_dict(), timeout_ms)
  if not response then
    return nil, { message = tostring(err or "no answer") }
  end
  if response.err then
    return nil, response.err
  end
  return response.result
end

--- Stops the daemon (LSP shutdown + exit). With wait_ms, waits for the process to end.
function M.stop(wait_ms)
  local client = M.get()
  if not client then
    return true
  end
  state.stopping = true
  call(client, "stop")
  if wait_ms then
    return vim.wait(wait_ms, function()
      return is_stopped(client)
    end, 20)
  end
  return true
end

--- Restarts with the current options (after setup() changed them).
function M.restart()
  M.stop(3000)
  return M.start()
end

return M
