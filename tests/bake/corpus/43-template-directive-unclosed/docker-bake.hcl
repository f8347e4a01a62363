target "default" {
  args = {
    A = "%{ if true }never closed"
  }
}
