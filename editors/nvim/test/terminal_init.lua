-- Neovim's init for the real-terminal checks of test/run.sh (in tmux): the plugin from
-- this checkout against $CFGATE_TERMINAL_BASE_URL, a statusline with the daemon's state.
vim.opt.rtp:prepend(os.getenv("CFGATE_NVIM_PLUGIN"))
vim.o.statusline = "%f %m%=%{v:lua.require'cfgate'.statusline()} "
require("cfgate").setup({
  cmd = { os.getenv("CFGATE_BIN"), "serve" },
  settings = { base_url = os.getenv("CFGATE_TERMINAL_BASE_URL"), max_attempts = 1 },
  inline = { debounce_ms = 60 },
})
