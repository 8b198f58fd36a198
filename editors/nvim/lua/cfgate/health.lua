--- :checkhealth cfgate
local M = {}

function M.check()
  local health = vim.health
  local config = require("cfgate.config")
  local client = require("cfgate.client")

  health.start("cfgate: Neovim")
  if vim.fn.has("nvim-0.10") == 1 then
    health.ok("Neovim " .. tostring(vim.version()))
  else
    health.error("Neovim >= 0.10 is required (vim.lsp.start, inline virtual text)")
    return
  end
  if not require("cfgate").configured then
    health.info("require('cfgate').setup() was not called: commands work, inline suggestions are off")
  end

  health.start("cfgate: daemon")
  local cmd = config.get().cmd
  local exe = type(cmd) == "table" and cmd[1] or nil
  local path = exe and vim.fn.exepath(exe) or ""
  if path == "" then
    health.error(("executable not found: %s"):format(tostring(exe)), {
      "install cfgate (`cargo install --path .` in the cfgate checkout) so it is on $PATH",
      "or set require('cfgate').setup({ cmd = { '/path/to/cfgate', 'serve', '--shared' } })",
    })
    return
  end
  health.ok("executable: " .. path)
  local out = vim.system({ path, "--version" }, { text = true }):wait(5000)
  if out and out.code == 0 then
    health.ok("version: " .. vim.trim(out.stdout or ""))
  else
    health.warn("`" .. path .. " --version` failed: " .. vim.trim((out and out.stderr) or ""))
  end

  health.start("cfgate: settings")
  local status, err = client.request_sync("cfgate/status", vim.empty_dict(), 5000)
  if not status then
    health.error("cfgate/status failed: " .. client.format_error(err))
    return
  end
  if status.credentials_complete then
    health.ok("credentials complete")
  else
    local missing = status.missing or {}
    health.error("credentials incomplete: missing " .. table.concat(missing, ", "), {
      "set them in the environment Neovim starts cfgate with, in ~/.config/cfgate/config.toml,",
      "or in require('cfgate').setup({ settings = { account_id = ..., ... } })",
    })
  end
  if type(status.settings_error) == "string" then
    health.error("settings: " .. status.settings_error)
  end
  health.info("model: " .. tostring(status.model))
  health.info("base url: " .. (type(status.base_url) == "string" and status.base_url or "(incomplete)"))
end

return M
