--- Options of the cfgate plugin: defaults, and the merged result of setup().
local M = {}

--- Settings keys the daemon knows (docs/protocol.md, "Settings").
M.setting_keys = {
  "api_token",
  "account_id",
  "gateway_id",
  "gateway_token",
  "base_url",
  "gateway_url",
  "model",
  "max_tokens",
  "timeout_secs",
  "idle_timeout_secs",
  "max_attempts",
  "retry_deadline_secs",
  "allow_insecure_http",
  "completion_context_chars",
  "language_features",
  "endpoint",
  "api_url",
  "byok",
  "gateway",
  "connect_timeout_secs",
  "max_in_flight",
  "session_budget_tokens",
  "idle_exit_secs",
  "requests_per_minute",
  "listen_origins",
  "listen",
}

M.defaults = {
  -- How to start the daemon: a command list (a string is taken as the executable).
  -- `--shared`: every editor and script joins the user's one daemon (one pool, the same
  -- conversations); `{ "cfgate", "serve" }` starts a private one for this Neovim.
  cmd = { "cfgate", "serve", "--shared" },
  -- Extra environment for the daemon (e.g. { CLOUDFLARE_API_TOKEN = "..." }).
  cmd_env = nil,
  -- Daemon settings, sent as initializationOptions: the same flat keys as the config
  -- file (base_url, account_id, gateway_id, model, max_tokens, ...).
  settings = {},
  -- Attach the daemon to file buffers so Neovim offers its code actions (cfgate: explain,
  -- fix, add docs) on a selection: `gra` in visual mode. Starts the daemon with the
  -- first file buffer entered.
  code_actions = true,
  chat = {
    -- Optional system message sent first with every chat request.
    system_prompt = nil,
    -- Default session for :CfgateChat: a name, or a function(cwd) returning one (e.g.
    -- the project's directory name); nil: a plain chat kept only in the buffer.
    session = nil,
    user_heading = "## You",
    assistant_heading = "## cfgate",
    -- Where :CfgateChat opens the chat buffer: "vsplit", "split", "tab" or "current".
    open = "vsplit",
    -- Extra OpenAI fields for chat requests (temperature, max_tokens, ...).
    params = {},
    keymaps = {
      send = "<CR>", -- normal mode, in the chat buffer
      send_insert = "<C-s>", -- insert mode, in the chat buffer
      cancel = "<C-c>", -- normal mode, in the chat buffer
    },
  },
  ask = {
    width = 0.8, -- fraction of the editor
    height = 0.6,
    border = "rounded",
  },
  inline = {
    enabled = true,
    -- Ask for a suggestion after typing pauses; false: only :CfgateComplete / trigger key.
    auto_trigger = true,
    debounce_ms = 150,
    -- The context sent around the cursor is the daemon's `completion_context_chars`
    -- (settings; 8000 by default): about three quarters before the cursor.
    -- cfgate/complete options (nil: the daemon's defaults).
    max_tokens = nil,
    temperature = nil,
    -- Filetype -> false to turn inline suggestions off there (buffers with a 'buftype'
    -- such as prompts and terminals are always skipped).
    filetypes = { help = false, gitcommit = false, gitrebase = false },
    keymaps = {
      accept = "<M-l>", -- insert mode; falls back to the key's own meaning when no suggestion
      accept_word = "<M-Right>",
      accept_line = "<M-C-Right>",
      dismiss = "<M-h>",
      trigger = "<M-\\>",
    },
  },
}

local options = vim.deepcopy(M.defaults)

--- Merges user options over the defaults.
function M.set(opts)
  opts = opts or {}
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  -- Lists are replaced, not merged.
  if opts.cmd ~= nil then
    merged.cmd = opts.cmd
  end
  if type(merged.cmd) == "string" then
    merged.cmd = { merged.cmd, "serve", "--shared" }
  end
  options = merged
  return options
end

function M.get()
  return options
end

--- Unknown settings keys (the daemon refuses them at initialize).
function M.unknown_settings(settings)
  local known = {}
  for _, k in ipairs(M.setting_keys) do
    known[k] = true
  end
  local unknown = {}
  for k in pairs(settings or {}) do
    if not known[k] then
      table.insert(unknown, tostring(k))
    end
  end
  table.sort(unknown)
  return unknown
end

return M
