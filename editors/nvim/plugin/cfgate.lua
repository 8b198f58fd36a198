-- cfgate: Cloudflare AI Gateway in Neovim (>= 0.10). Commands only; the daemon starts on
-- first use. Call require("cfgate").setup({...}) for options and inline suggestions.
if vim.g.loaded_cfgate then
  return
end
vim.g.loaded_cfgate = true

if vim.fn.has("nvim-0.10") ~= 1 then
  vim.api.nvim_create_user_command("CfgateStatus", function()
    vim.notify("cfgate: Neovim >= 0.10 is required", vim.log.levels.ERROR)
  end, {})
  return
end

local function cfgate()
  return require("cfgate")
end

local command = vim.api.nvim_create_user_command

command("CfgateStart", function()
  cfgate().start()
end, { desc = "cfgate: start the daemon" })

command("CfgateStop", function()
  require("cfgate.chat").cancel_all()
  cfgate().stop()
end, { desc = "cfgate: stop the daemon" })

command("CfgateRestart", function()
  cfgate().restart()
end, { desc = "cfgate: restart the daemon" })

command("CfgateChat", function(o)
  -- `session=NAME` first: continue that conversation kept by the daemon.
  local session, rest = o.args:match("^%s*session=(%S+)%s*(.*)$")
  cfgate().chat(session and rest or o.args, { new = o.bang, session = session })
end, {
  nargs = "*",
  bang = true,
  desc = "cfgate: chat (session=NAME continues a stored conversation; ! starts a new one)",
})

command("CfgateSessions", function()
  require("cfgate.sessions").pick_session()
end, { desc = "cfgate: open a stored conversation" })

command("CfgateAsk", function(o)
  local line1, line2 = o.line1, o.line2
  if o.range == 0 then
    line1, line2 = 1, vim.api.nvim_buf_line_count(0)
  end
  cfgate().ask(line1, line2, o.args)
end, { nargs = "*", range = true, desc = "cfgate: ask about the selection" })

command("CfgateComplete", function()
  cfgate().complete()
end, { desc = "cfgate: inline suggestion at the cursor" })

command("CfgateAccept", function()
  cfgate().accept()
end, { desc = "cfgate: accept the inline suggestion" })

command("CfgateDismiss", function()
  cfgate().dismiss()
end, { desc = "cfgate: dismiss the inline suggestion" })

command("CfgateInlineToggle", function()
  require("cfgate.inline").toggle()
end, { desc = "cfgate: inline suggestions on/off" })

command("CfgateModels", function(o)
  cfgate().models(o.args)
end, {
  nargs = "?",
  desc = "cfgate: choose the model",
  complete = function(lead)
    return vim.tbl_filter(function(m)
      return m:find(lead, 1, true) == 1
    end, require("cfgate.models").ids())
  end,
})

command("CfgateStatus", function()
  cfgate().status()
end, { desc = "cfgate: show the daemon's status" })
