from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from core.inputs import read_input
from core.permissions import role_of
from core.throttling import LOGIN_THROTTLES, logged_in
from core.tokens import expires_at, issue_token, revoke_token


class TokenInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class TokenView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = LOGIN_THROTTLES

    def get_throttles(self):
        self.login_throttles = super().get_throttles()  # kept: a login that succeeds is taken back out of them
        return self.login_throttles

    @extend_schema(
        request=TokenInput,
        responses={
            200: inline_serializer(
                "TokenOutput",
                {
                    "token": serializers.CharField(),
                    "role": serializers.ChoiceField(choices=["driver", "merchant", "ops"]),
                    "expires_at": serializers.DateTimeField(help_text="Log in again after this for a new token."),
                },
            )
        },
    )
    def post(self, request):
        data = read_input(TokenInput, request)
        user = authenticate(request, **data)
        role = role_of(user)
        if user is None or role is None:
            raise DomainError(
                "Wrong username or password.", code="invalid_credentials", status=status.HTTP_401_UNAUTHORIZED
            )
        logged_in(self.login_throttles)
        token = issue_token(user)
        return Response({"token": token.key, "role": role, "expires_at": expires_at(token)})


class LogoutView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(description="The token is revoked; sockets opened with it close within a minute.")
        },
    )
    def post(self, request):
        revoke_token(request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)
