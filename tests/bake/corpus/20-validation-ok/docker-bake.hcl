variable "PORT" {
  default = 8080
  validation {
    condition     = PORT > 1024
    error_message = "PORT must be unprivileged"
  }
  validation {
    condition     = PORT < 65536
    error_message = "PORT must be a port number"
  }
}
target "default" {
  args = { PORT = PORT }
}
