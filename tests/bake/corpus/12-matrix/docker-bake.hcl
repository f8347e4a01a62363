target "app" {
  matrix = {
    tgt = ["alpine", "debian"]
  }
  name   = "app-${tgt}"
  target = tgt
  tags   = ["acme/app:${tgt}"]
}
